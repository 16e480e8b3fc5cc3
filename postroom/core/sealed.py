"""Encrypted model attributes: ``Message.subject`` reads and writes ``Message.subject_sealed``.

Each value is AES-256-GCM ciphertext (see ``core.crypto``) under the data key of the row's key
scope, with associated data binding it to its table, column and row id, so a ciphertext copied
to another row, column or organization does not decrypt. The scope comes from the row's
``key_scope()`` method: the organization today; a member's own scope for the mail of personal
mailboxes is a change to that one method (erasure, a later issue).

Decrypted values are cached on the instance; nothing is decrypted until an attribute is read.
"""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar, overload

from postroom.core.crypto import Field
from postroom.core.keys import keyring

T = TypeVar("T")


class Sealed(Generic[T]):
    """A descriptor over a ``BinaryField`` named ``<name>_sealed``; ``kind`` is "text" or "json"."""

    def __init__(self, kind: str = "text") -> None:
        if kind not in {"text", "json"}:
            raise ValueError(kind)
        self.kind = kind
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.column = f"{name}_sealed"
        self.cache = f"_{name}_plain"

    def _field(self, instance: Any) -> Field:
        if instance.pk is None:
            raise ValueError(f"{type(instance).__name__}.{self.name}: the row needs its id before a value is sealed")
        return Field(table=instance._meta.db_table, column=self.column, row=str(instance.pk))

    @overload
    def __get__(self, instance: None, owner: type) -> Sealed[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T | None: ...
    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        if self.cache in instance.__dict__:
            return instance.__dict__[self.cache]
        stored = getattr(instance, self.column)
        value = None if stored is None else self._open(instance.key_scope(), self._field(instance), stored)
        instance.__dict__[self.cache] = value
        return value

    def _open(self, scope: str, field: Field, stored: Any) -> Any:
        plain = keyring().decrypt(scope, field, bytes(stored))
        return plain.decode("utf-8") if self.kind == "text" else json.loads(plain)

    def open_stored(self, *, model: type, scope: str, row: object, stored: Any) -> T | None:
        """The value of a column read without a model instance (a constant query's tuple):
        ``stored`` is the ``<name>_sealed`` column of the row with id ``row`` of ``model``'s table,
        under the key ``scope`` that the row's ``key_scope()`` would give."""
        if stored is None:
            return None
        return self._open(scope, Field(table=model._meta.db_table, column=self.column, row=str(row)), stored)  # type: ignore[attr-defined]

    def __set__(self, instance: Any, value: T | None) -> None:
        if value is None:
            setattr(instance, self.column, None)
        else:
            plain = value.encode("utf-8") if self.kind == "text" else json.dumps(value).encode("utf-8")  # type: ignore[attr-defined]
            setattr(instance, self.column, keyring().encrypt(instance.key_scope(), self._field(instance), plain))
        instance.__dict__[self.cache] = value
