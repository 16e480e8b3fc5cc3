"""Model instances from a constant SQL text (SECURITY.md R58: parameters only, never text built
from values), for the few hot reads where building and compiling the ORM's query costs more than
running it (the conversation page, issue #4).

``rows_of`` runs the query with the connection's cursor and builds each instance as the ORM's own
iterator does: every column of the model's table through the database backend's and the field's
converters (SQLite hands back UUIDs as hex and times as text), then ``Model.from_db``. Columns
that are not the model's are set as attributes of the instance (``SELECT t.*, x.y AS extra``).

``Reads`` sends a page's independent reads together: on PostgreSQL in one pipeline (one round
trip for all of them instead of one each, and one wait for the request's thread instead of many),
on SQLite one after another. A selector that a page reads with others is written as a ``Read``
(its queries and how their answers become its result) and a function that reads it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model
from django.db.models.expressions import Col

M = TypeVar("M", bound=Model)
T = TypeVar("T")
_Converter = Callable[[Any, Any, Any], Any]
Query = tuple[str, Mapping[str, Any] | Sequence[Any]]  # a constant text and its parameters
Fetched = tuple[list[str], list[tuple[Any, ...]]]  # a query's column names and rows


def fetch_together(queries: Sequence[Query]) -> list[Fetched]:
    """Each query's column names and rows, in order. On PostgreSQL, two or more queries go in one
    pipeline (psycopg's pipeline mode): sent at once, answered at once. They still run through
    Django's cursors, so query logging and counting see every one."""
    if len(queries) > 1 and connection.vendor == "postgresql":
        connection.ensure_connection()
        cursors = [connection.cursor() for _ in queries]
        try:
            with connection.wrap_database_errors, connection.connection.pipeline():  # an error raised at the sync is Django's, too
                for cursor, (sql, parameters) in zip(cursors, queries, strict=True):
                    cursor.execute(sql, parameters)
            return [([column[0] for column in cursor.description], cursor.fetchall()) for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()
    fetched = []
    with connection.cursor() as cursor:
        for sql, parameters in queries:
            cursor.execute(sql, parameters)
            fetched.append(([column[0] for column in cursor.description], cursor.fetchall()))
    return fetched


@dataclass(frozen=True)
class Read(Generic[T]):
    """A selector's queries and how their answers (``Fetched``, in the same order) become its result."""

    queries: tuple[Query, ...]
    build: Callable[[list[Fetched]], T]

    def alone(self) -> T:
        return self.build(fetch_together(self.queries))


class Pending(Generic[T]):
    """The result of a ``Read`` added to ``Reads``, there once ``Reads.run`` has run."""

    def __init__(self) -> None:
        self._result: tuple[T] | None = None

    @property
    def value(self) -> T:
        if self._result is None:
            raise RuntimeError("read before Reads.run()")
        return self._result[0]

    def _set(self, value: T) -> None:
        self._result = (value,)


class Reads:
    """Independent reads run together (see the module docstring): ``add`` each, ``run``, then
    take each ``Pending.value``."""

    def __init__(self) -> None:
        self._reads: list[tuple[Read[Any], Pending[Any]]] = []

    def add(self, read: Read[T]) -> Pending[T]:
        pending: Pending[T] = Pending()
        self._reads.append((read, pending))
        return pending

    def run(self) -> None:
        fetched = fetch_together([query for read, _ in self._reads for query in read.queries])
        start = 0
        for read, pending in self._reads:
            end = start + len(read.queries)
            pending._set(read.build(fetched[start:end]))
            start = end
        self._reads = []


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
    return instances(model, fetch_together([(sql, parameters)])[0])


def instances(model: type[M], fetched: Fetched) -> list[M]:
    """``rows_of`` for a query already answered (``fetch_together``, ``Read``)."""
    names, found = fetched
    build = builder(model, names)
    return [build(row) for row in found]


def rows_joined(model: type[M], related: Sequence[tuple[str, type[Model]]], sql: str, parameters: Mapping[str, Any]) -> list[M]:
    """``rows_of`` for ``SELECT a.*, b.*, …``: the columns of ``model``'s table, then those of each
    ``related`` model's, each instance given its related ones as ``select_related`` would.
    ``related`` is ``(path, model)`` in the query's order; a path names a relation of ``model``
    (``"author"``) or of one named before it (``"author.user"``). A related row whose key is NULL
    (a LEFT JOIN that found nothing) is None. The columns are split by count, so a table whose
    columns are not exactly its model's is refused rather than read wrong."""
    return instances_joined(model, related, fetch_together([(sql, parameters)])[0])


def instances_joined(model: type[M], related: Sequence[tuple[str, type[Model]]], fetched: Fetched) -> list[M]:
    """``rows_joined`` for a query already answered (``fetch_together``, ``Read``)."""
    names, found = fetched
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
