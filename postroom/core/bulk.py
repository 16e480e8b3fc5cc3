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

Preparing a value through the field costs a dozen Python calls (and a look-up of the
thread's connection through Django's proxy on each); for the few stock field types these
tables use, ``_preparer`` takes the step the field would end in for a value already of the
field's type (a ``str`` for a ``CharField``, an aware ``datetime`` for a ``DateTimeField``…)
or ``None`` (NULL), and leaves everything else to the field itself; ``test_bulk`` checks both ways
agree for every field of the tables written this way.

``model_instance`` builds the instances those inserts take (and their callers read) the way the
ORM builds a row it reads, positionally, instead of ``Model(**values)``, which looks each field
up in the keyword arguments and computes its default anew; and where ``Model.__init__`` would
only put each value in the instance's ``__dict__`` (no ``pre_init``/``post_init`` receiver for
the model, no ``__init__`` of its own, every column a plain or foreign-key attribute of Django's),
it puts them there itself, without a ``setattr`` through a descriptor per field; ``test_bulk``
compares both ways.

``values_parameter`` is the other half: the per-batch look-ups of storing mail (hundreds of
content indexes, Message-IDs, UIDs) as constant SQL texts (SECURITY.md R58) with the whole list
as one parameter, instead of an IN list the ORM compiles value by value for every batch.
"""

from __future__ import annotations

import datetime
import inspect
import json
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

Preparer = Callable[[Any], Any]
ModelT = TypeVar("ModelT", bound=models.Model)

_INTEGER_FIELDS = (models.IntegerField, models.BigIntegerField, models.PositiveIntegerField, models.SmallIntegerField,
                   models.PositiveBigIntegerField, models.PositiveSmallIntegerField)  # fmt: skip


def _preparer(field: models.Field[Any, Any], connection: BaseDatabaseWrapper) -> Preparer:
    """A function giving what ``field.get_db_prep_save(value, connection)`` gives, for any value."""
    kind = type(field)

    def slow(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    if kind in (models.ForeignKey, models.OneToOneField):
        target = _preparer(cast(models.ForeignKey[Any, Any], field).target_field, connection)
        # ForeignKey.get_db_prep_save hands a key (never NULL nor "") to its target field.
        return lambda value: target(value) if type(value) in (uuid.UUID, int) else None if value is None else slow(value)
    if kind in (models.CharField, models.TextField):
        # A str subclass too (the choices' enums), which the field hands on as it is.
        return lambda value: value if isinstance(value, str) or value is None else slow(value)
    if kind is models.BooleanField:
        return lambda value: value if type(value) is bool or value is None else slow(value)
    if kind in _INTEGER_FIELDS:
        adapt_integer, internal_type = connection.ops.adapt_integerfield_value, field.get_internal_type()
        return lambda value: adapt_integer(value, internal_type) if type(value) is int else None if value is None else slow(value)
    if kind in (models.AutoField, models.BigAutoField):
        validate = connection.ops.validate_autopk_value
        return lambda value: validate(value) if type(value) is int else slow(value)
    if kind is models.UUIDField:
        if connection.features.has_native_uuid_field:
            return lambda value: value if type(value) is uuid.UUID or value is None else slow(value)
        return lambda value: value.hex if type(value) is uuid.UUID else None if value is None else slow(value)
    if kind is models.DateTimeField:
        if connection.vendor == "sqlite" and settings.USE_TZ:
            # What the SQLite backend's adapt_datetimefield_value does to an aware datetime,
            # without its look-up of the setting for every value.
            return lambda value: (
                str(value.astimezone(connection.timezone).replace(tzinfo=None))
                if type(value) is datetime.datetime and value.utcoffset() is not None
                else None
                if value is None
                else slow(value)
            )
        adapt_datetime = connection.ops.adapt_datetimefield_value
        return lambda value: (
            adapt_datetime(value)
            if type(value) is datetime.datetime and value.utcoffset() is not None
            else None
            if value is None
            else slow(value)
        )
    if kind is models.BinaryField:
        binary = connection.Database.Binary  # type: ignore[attr-defined]
        return lambda value: binary(value) if type(value) is bytes else None if value is None else slow(value)
    return slow


# Per connection (each thread has its own), the columns and preparers of each (model, fields).
_prepared_columns: weakref.WeakKeyDictionary[
    BaseDatabaseWrapper, dict[tuple[type[models.Model], tuple[str, ...]], tuple[list[models.Field[Any, Any]], list[Preparer]]]
] = weakref.WeakKeyDictionary()


def _preparers(
    model: type[models.Model], fields: Sequence[str]
) -> tuple[BaseDatabaseWrapper, list[models.Field[Any, Any]], list[Preparer]]:
    connection = connections[DEFAULT_DB_ALIAS]
    known = _prepared_columns.setdefault(connection, {})
    key = (model, tuple(fields))
    if key not in known:
        columns: list[models.Field[Any, Any]] = []
        for name in fields:
            field = model._meta.get_field(name)
            if not isinstance(field, models.Field) or not field.column:
                raise ValueError(f"{model.__name__}.{name} is not a column")
            columns.append(field)
        known[key] = (columns, [_preparer(field, connection) for field in columns])
    columns, preparers = known[key]
    return connection, columns, preparers


def rows_insert(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]], *, ignore_conflicts: bool = False) -> None:
    """INSERT ``rows`` (values in the order of ``fields``) into ``model``'s table; with
    ``ignore_conflicts``, a row breaking a unique constraint is skipped, as ``bulk_create``'s."""
    connection, columns, preparers = _preparers(model, fields)
    prepared = [[prepare(value) for prepare, value in zip(preparers, row, strict=True)] for row in rows]
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


def instances_insert(instances: Sequence[models.Model], *, ignore_conflicts: bool = False) -> None:
    """INSERT ``instances`` (all of one model) as ``bulk_create`` would, see the module docstring;
    ``ignore_conflicts`` as ``bulk_create``'s."""
    if not instances:
        return
    model = type(instances[0])
    # A primary key the database assigns (AutoField: db_returning) is left to it.
    fields = [field for field in model._meta.local_concrete_fields if not (field.primary_key and getattr(field, "db_returning", False))]
    # A field with its own pre_save (auto_now_add dates…) computes its value; the others hold it.
    plain = [type(field).pre_save is models.Field.pre_save for field in fields]
    attnames = [field.attname for field in fields]
    rows = []
    for instance in instances:
        if type(instance) is not model:
            raise TypeError(f"{type(instance).__name__} among {model.__name__} instances")
        rows.append(
            [
                getattr(instance, attname) if is_plain else field.pre_save(instance, True)
                for field, attname, is_plain in zip(fields, attnames, plain, strict=True)
            ]
        )
    rows_insert(model, [field.name for field in fields], rows, ignore_conflicts=ignore_conflicts)
    alias = connections[DEFAULT_DB_ALIAS].alias
    for instance in instances:
        instance._state.adding = False
        instance._state.db = alias


# Per model, each concrete field's attname and how its default is made: a constant (the
# field's default, or the empty value a field without one gets), or a callable default, called
# for each instance as Model.__init__ calls it; the set of attnames; and whether Model.__init__,
# given every column, would only store each value in the instance's __dict__ (see the module
# docstring; its pre_init and post_init signals are checked on each call).
_defaults: dict[type[models.Model], tuple[list[tuple[str, Any, Callable[[], Any] | None]], frozenset[str], tuple[str, ...] | None]] = {}


def _stores_plainly(model: type[models.Model]) -> bool:
    """Whether ``Model.__init__`` with every column given positionally sets nothing but ``_state``
    and each column's value in ``__dict__``: Django's ``__init__`` and ``__new__``, and for each
    column Django's attribute (a ``ForeignKeyDeferredAttribute``'s ``__set__`` only drops a cached
    related object, which a new instance has not got)."""
    if model.__init__ is not models.Model.__init__ or model.__new__ is not models.Model.__new__:
        return False
    return all(
        type(inspect.getattr_static(model, field.attname, None)) in (DeferredAttribute, ForeignKeyDeferredAttribute)
        for field in model._meta.concrete_fields
    )


def model_instance(model: type[ModelT], values: dict[str, Any]) -> ModelT:
    """``model(**values)``, ``values`` given by attname (``conversation_id``, not ``conversation``),
    built positionally as the ORM builds the rows it reads; see the module docstring."""
    known = _defaults.get(model)
    if known is None:
        fields = model._meta.concrete_fields
        known = _defaults[model] = (
            [
                (field.attname, None, field.default)
                if field.has_default() and callable(field.default)
                else (field.attname, field.get_default(), None)
                for field in fields
            ],
            frozenset(field.attname for field in fields),
            tuple(field.attname for field in fields) if _stores_plainly(model) else None,
        )
    defaults, attnames, plain = known
    if not values.keys() <= attnames:
        raise TypeError(f"{model.__name__} has no columns {sorted(values.keys() - attnames)}")
    arguments = [values[attname] if attname in values else constant if factory is None else factory() for attname, constant, factory in defaults]
    if plain is None or pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model(*arguments)
    instance = model.__new__(model)
    instance._state = ModelState()
    instance.__dict__.update(zip(plain, arguments, strict=True))
    return instance


def values_parameter(values: Iterable[Any]) -> Any:
    """``values`` (strings, integers, UUIDs) as the one parameter of a constant text's
    ``IN (SELECT value FROM json_each(%s))`` on SQLite, ``= ANY(%s)`` on PostgreSQL: a JSON array
    (a UUID as SQLite's UUID columns hold it, its hex) or a list the driver sends as an array."""
    if connections[DEFAULT_DB_ALIAS].vendor == "sqlite":
        return json.dumps([value.hex if type(value) is uuid.UUID else value for value in values])
    return list(values)


def as_uuid(value: Any) -> uuid.UUID:
    """A UUID column's value as a cursor gives it (SQLite: its hex; PostgreSQL: a UUID)."""
    return value if type(value) is uuid.UUID else uuid.UUID(value)
