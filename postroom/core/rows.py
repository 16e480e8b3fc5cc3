"""Model instances from a constant SQL text (SECURITY.md R58: parameters only, never text built
from values), for the few hot reads where building and compiling the ORM's query costs more than
running it (the conversation page, issue #4).

``rows_of`` runs the query with the connection's cursor and builds each instance as the ORM's own
iterator does: every column of the model's table through the database backend's and the field's
converters (SQLite hands back UUIDs as hex and times as text), then ``Model.from_db``. Columns
that are not the model's are set as attributes of the instance (``SELECT t.*, x.y AS extra``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)
_Converter = Callable[[Any, Any, Any], Any]


def _converters(model: type[Model], column: str) -> tuple[Any, Col, list[_Converter]] | None:
    # Remembered on the thread's connection (each thread has its own, and the backend's
    # converters are its methods): the same columns are read on every page.
    wrapper = connections[DEFAULT_DB_ALIAS]
    known: dict[tuple[type[Model], str], Any] = wrapper.__dict__.setdefault("_postroom_converters", {})
    key = (model, column)
    if key not in known:
        field = next((field for field in model._meta.concrete_fields if field.column == column), None)
        if field is None:
            known[key] = None
        else:
            expression = field.get_col(model._meta.db_table)  # a foreign key reads as its target (a UUID stays a UUID)
            known[key] = (field, expression, [*wrapper.ops.get_db_converters(expression), *expression.get_db_converters(wrapper)])
    return known[key]


def rows_of(model: type[M], sql: str, parameters: Mapping[str, Any]) -> list[M]:
    """The instances of ``model`` that ``sql`` (a constant text selecting its table's columns) finds, in its order."""
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        names = [column[0] for column in cursor.description]
        found = cursor.fetchall()
    build = builder(model, names)
    return [build(row) for row in found]


def rows_joined(model: type[M], related: Sequence[tuple[str, type[Model]]], sql: str, parameters: Mapping[str, Any]) -> list[M]:
    """``rows_of`` for ``SELECT a.*, b.*, …``: the columns of ``model``'s table, then those of each
    ``related`` model's, each instance given its related ones as ``select_related`` would.
    ``related`` is ``(path, model)`` in the query's order; a path names a relation of ``model``
    (``"author"``) or of one named before it (``"author.user"``). A related row whose key is NULL
    (a LEFT JOIN that found nothing) is None. The columns are split by count, so a table whose
    columns are not exactly its model's is refused rather than read wrong."""
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        names = [column[0] for column in cursor.description]
        found = cursor.fetchall()
    parts: list[tuple[list[str], Callable[[Sequence[Any]], Any], int, int, int]] = []
    start = 0
    tables: list[tuple[str, type[Model]]] = [("", model), *related]
    for path, part in tables:
        end = start + len(part._meta.concrete_fields)
        columns = names[start:end]
        if sorted(columns) != sorted(field.column for field in part._meta.concrete_fields):
            raise ValueError(f"columns {start}-{end} of the query are not {part.__name__}'s: {columns}")
        key = start + columns.index(part._meta.pk.column)
        parts.append((path.split(".") if path else [], builder(part, columns), start, end, key))
        start = end
    instances = []
    for row in found:
        instance = parts[0][1](row[parts[0][2] : parts[0][3]])
        for steps, build, begin, end, key in parts[1:]:
            owner = instance
            for step in steps[:-1]:
                owner = getattr(owner, step) if owner is not None else None
            if owner is not None:
                setattr(owner, steps[-1], build(row[begin:end]) if row[key] is not None else None)
        instances.append(instance)
    return instances


def builder(model: type[M], names: Sequence[str]) -> Callable[[Sequence[Any]], M]:
    """A function that makes an instance of ``model`` from a row whose columns are ``names``, see
    the module docstring. It uses this thread's connection: make it where it is used."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    alias = wrapper.alias
    columns = [_converters(model, name) for name in names]
    order = [field.attname for field in model._meta.concrete_fields]

    def build(row: Sequence[Any]) -> M:
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value, column in zip(names, row, columns, strict=True):
            if column is None:
                extra[name] = value
                continue
            field, expression, converters = column
            for converter in converters:
                value = converter(value, expression, wrapper)
            values[field.attname] = value
        present = [attname for attname in order if attname in values]
        instance = model.from_db(alias, present, [values[attname] for attname in present])
        instance.__dict__.update(extra)
        return instance

    return build


def prefetched(instance: Model, name: str, objects: list[Any]) -> None:
    """Give ``instance`` its related ``objects`` under the reverse relation ``name``, as
    ``prefetch_related(name)`` would: ``instance.<name>.all()`` answers from them without a query."""
    queryset = getattr(instance, name).all()  # lazy: nothing is read
    queryset._result_cache = objects
    queryset._prefetch_done = True
    cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
    cache[name] = queryset
