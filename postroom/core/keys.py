"""The keyring: finds, creates, caches and rotates data keys, and encrypts values with them.

See ``core.crypto`` for the threat model. Here lives the policy: which key a value uses (the
current version of its scope), when a data key is retired (usage limit), and how the master
key is rotated online (every data key is re-wrapped under the new master key in its own short
transaction; readers keep working because every process can still unwrap with the old key until
it is removed from the key file).
"""

from __future__ import annotations

import atexit
import logging
import secrets
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from postroom.core import crypto
from postroom.core.keyfiles import MasterKey, load_master_keys, prepend_master_key
from postroom.core.models import DataKey

logger = logging.getLogger(__name__)

SYSTEM_SCOPE = "system"
FLUSH_EVERY = 1024
ENCRYPTIONS_PER_KEY_LIMIT = crypto.NONCE_LIMIT - 2**20  # margin for counts not yet flushed


def org_scope(organization_id: object) -> str:
    return f"org:{organization_id}"


class Keyring:
    def __init__(self, master_keys: list[MasterKey]) -> None:
        self.master_keys = {key.key_id: key for key in master_keys}
        self.current_master = master_keys[0]
        self._cache: dict[tuple[str, int], bytes] = {}
        self._current: dict[str, int] = {}
        self._index_keys: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.usage = crypto.UsageCounter()

    # -- data keys ------------------------------------------------------------------------------
    def _unwrap(self, row: DataKey) -> bytes:
        master = self.master_keys.get(row.master_key_id)
        if master is None:
            logger.critical("master key %s needed for %s is not in the key file", row.master_key_id, row)
            raise crypto.DecryptionError(f"master key {row.master_key_id} is not available")
        return crypto.unwrap_data_key(master, bytes(row.wrapped_key), scope=row.scope, version=row.version)

    def _create(self, scope: str, version: int) -> DataKey:
        data_key = secrets.token_bytes(32)
        wrapped = crypto.wrap_data_key(self.current_master, data_key, scope=scope, version=version)
        return DataKey.objects.create(
            scope=scope, version=version, wrapped_key=wrapped, master_key_id=self.current_master.key_id
        )

    def current_key(self, scope: str) -> tuple[int, bytes]:
        version = self._current.get(scope)
        if version is not None:
            return version, self._cache[(scope, version)]
        row = DataKey.objects.filter(scope=scope, is_current=True).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = self._create(scope, 1)
            except IntegrityError:  # another process created it first
                row = DataKey.objects.get(scope=scope, is_current=True)
        key = self._unwrap(row)
        with self._lock:
            self._cache[(scope, row.version)] = key
            self._current[scope] = row.version
        return row.version, key

    def key(self, scope: str, version: int) -> bytes:
        cached = self._cache.get((scope, version))
        if cached is not None:
            return cached
        row = DataKey.objects.filter(scope=scope, version=version).first()
        if row is None:
            raise crypto.DecryptionError(f"data key {scope} v{version} does not exist")
        key = self._unwrap(row)
        with self._lock:
            self._cache[(scope, version)] = key
        return key

    # -- values ---------------------------------------------------------------------------------
    def encrypt(self, scope: str, field: crypto.Field, plaintext: bytes) -> bytes:
        version, key = self.current_key(scope)
        self.usage.add(scope, version)
        if self.usage.pending.get((scope, version), 0) >= FLUSH_EVERY:
            self.flush_usage()
        return crypto.encrypt_with(key, plaintext, scope=scope, version=version, field=field)

    def decrypt(self, scope: str, field: crypto.Field, value: bytes) -> bytes:
        version = crypto.key_version_of(value)
        return crypto.decrypt_with(self.key(scope, version), value, scope=scope, field=field)

    def encrypt_text(self, scope: str, field: crypto.Field, text: str) -> bytes:
        return self.encrypt(scope, field, text.encode("utf-8"))

    def decrypt_text(self, scope: str, field: crypto.Field, value: bytes) -> str:
        return self.decrypt(scope, field, value).decode("utf-8")

    def blind_index(self, scope: str, purpose: str, value: str) -> str:
        """A deterministic keyed index for exact lookups, stable across data-key rotations.

        Its key is derived from the scope's first data key, so it dies with the scope's keys.
        """
        index_key = self._index_keys.get(scope)
        if index_key is None:
            self.current_key(scope)  # creates the scope's first key if needed
            index_key = bytes.fromhex(crypto.blind_index(self.key(scope, 1), "blind-index-key", scope))
            with self._lock:
                self._index_keys[scope] = index_key
        return crypto.blind_index(index_key, purpose, value)

    # -- usage and rotation -----------------------------------------------------------------------
    def flush_usage(self) -> None:
        for (scope, version), count in self.usage.drain().items():
            DataKey.objects.filter(scope=scope, version=version).update(encryptions=F("encryptions") + count)
            row = DataKey.objects.filter(scope=scope, version=version, is_current=True).first()
            if row is not None and row.encryptions >= ENCRYPTIONS_PER_KEY_LIMIT:
                self.rotate_data_key(scope)

    def rotate_data_key(self, scope: str) -> int:
        """Start a new data-key version for ``scope``; old versions stay for reading."""
        with transaction.atomic():
            rows = list(DataKey.objects.select_for_update().filter(scope=scope).order_by("-version"))
            next_version = rows[0].version + 1 if rows else 1
            DataKey.objects.filter(scope=scope, is_current=True).update(is_current=False)
            self._create(scope, next_version)
        with self._lock:
            self._current.pop(scope, None)
        logger.info("data key rotated: %s now at version %s", scope, next_version)
        return next_version

    def rewrap_all(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every data key under the current master key, one short transaction each."""
        ids = list(DataKey.objects.exclude(master_key_id=self.current_master.key_id).values_list("id", flat=True))
        for done, key_id in enumerate(ids, start=1):
            with transaction.atomic():
                row = DataKey.objects.select_for_update().get(id=key_id)
                plain = self._unwrap(row)
                row.wrapped_key = crypto.wrap_data_key(self.current_master, plain, scope=row.scope, version=row.version)
                row.master_key_id = self.current_master.key_id
                row.save(update_fields=["wrapped_key", "master_key_id"])
            if progress:
                progress(done, len(ids))
        return len(ids)


_keyring: Keyring | None = None
_keyring_lock = threading.Lock()


def keyring() -> Keyring:
    global _keyring
    if _keyring is None:
        with _keyring_lock:
            if _keyring is None:
                _keyring = Keyring(settings.MASTER_KEYS)
                if getattr(settings, "POSTROOM_FLUSH_KEY_USAGE_AT_EXIT", True):
                    atexit.register(_flush_at_exit)
    return _keyring


def _flush_at_exit() -> None:
    if _keyring is not None:
        try:
            _keyring.flush_usage()
        except Exception:  # the database may already be gone at interpreter exit
            logger.warning("could not record data-key usage at exit", exc_info=True)


def rotate_master_key(progress: Callable[[int, int], None] | None = None) -> tuple[str, int]:
    """Add a new master key to the key file and re-wrap every data key under it."""
    new_key = prepend_master_key(settings.MASTER_KEY_PATH)
    reload_keyring()
    count = keyring().rewrap_all(progress)
    return new_key.key_id, count


def reload_keyring() -> None:
    global _keyring
    with _keyring_lock:
        settings.MASTER_KEYS = load_master_keys(settings.MASTER_KEY_PATH, create=False)
        _keyring = Keyring(settings.MASTER_KEYS)
