"""Inserting many plain rows at once, for the hot paths of storing mail.

``bulk_create`` builds a model instance per row and compiles every value of every row into one
statement per few hundred rows; for narrow link tables written by the thousand during a first
import (a message's references, its indexed addresses) that costs more than the database
does. ``rows_insert`` prepares each value with its field (so the stored form is the one the
ORM would store) and hands the rows to the driver's ``executemany``.

Only for rows that need nothing from a model instance: no ``save()`` logic, no signals, no
defaults computed in Python, no primary key wanted back.

``instances_insert`` does the same for model instances built in Python (a first import creates
its messages, copies and conversations by the hundred): each value comes from the field's own
``pre_save`` and ``get_db_prep_save``, exactly as ``bulk_create`` would store it (sealed columns
hold the ciphertext the instance carries, ``auto_now_add`` dates are set), without compiling a
statement per few rows. Like ``bulk_create`` it calls no ``save()`` and sends no signals; a
primary key the database assigns (an ``AutoField``) is not read back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models


def rows_insert(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]], *, ignore_conflicts: bool = False) -> None:
    """INSERT ``rows`` (values in the order of ``fields``) into ``model``'s table; with
    ``ignore_conflicts``, a row breaking a unique constraint is skipped, as ``bulk_create``'s."""
    columns: list[models.Field[Any, Any]] = []
    for name in fields:
        field = model._meta.get_field(name)
        if not isinstance(field, models.Field) or not field.column:
            raise ValueError(f"{model.__name__}.{name} is not a column")
        columns.append(field)
    prepared = [[field.get_db_prep_save(value, connection) for field, value in zip(columns, row, strict=True)] for row in rows]
    if not prepared:
        return
    quote = connection.ops.quote_name
    names = ", ".join(quote(str(field.column)) for field in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    statement = f"INSERT INTO {quote(model._meta.db_table)} ({names}) VALUES ({placeholders})"  # noqa: S608 - quoted names from the model, values as parameters  # nosec B608
    if ignore_conflicts:
        statement = (
            statement.replace("INSERT", "INSERT OR IGNORE", 1) if connection.vendor == "sqlite" else f"{statement} ON CONFLICT DO NOTHING"
        )
    with connection.cursor() as cursor:
        cursor.executemany(statement, prepared)


def instances_insert(instances: Sequence[models.Model]) -> None:
    """INSERT ``instances`` (all of one model) as ``bulk_create`` would, see the module docstring."""
    if not instances:
        return
    model = type(instances[0])
    # A primary key the database assigns (AutoField: db_returning) is left to it.
    fields = [field for field in model._meta.local_concrete_fields if not (field.primary_key and getattr(field, "db_returning", False))]
    rows = []
    for instance in instances:
        if type(instance) is not model:
            raise TypeError(f"{type(instance).__name__} among {model.__name__} instances")
        rows.append([field.pre_save(instance, True) for field in fields])
    rows_insert(model, [field.name for field in fields], rows)
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias
