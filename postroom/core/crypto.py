"""Encryption of content at rest: AES-256-GCM under per-scope data keys wrapped by the master key.

Threat model: an attacker who obtains a copy of the database (a dump, a backup, a stolen disk)
and of the blob directory, but not the master key file, must learn no content. An attacker who
can also write to the database must not be able to move a ciphertext to another row, column or
organization and have it decrypt there.

Defences:
- Each key scope (an organization; later also one per member for personal mail, so that deleting
  that key erases every copy, backups included) has a random 256-bit data key. Data keys are
  stored only wrapped (AES-256-GCM) by the master key, which lives outside the database.
- Every value gets a fresh 96-bit random nonce. A data key is retired before it has been used
  2**32 times (NIST SP 800-38D, random-nonce limit); a usage counter enforces this.
- The associated data binds each ciphertext to its scope, table, column, row and key version, so
  a swapped ciphertext fails authentication instead of decrypting in the wrong place.
- Any failure (unknown key, tampered value, missing master key) raises ``DecryptionError``: we
  fail closed, never fall back to returning stored bytes.

Format of an encrypted value: ``b"P1" | key_version (4 bytes, big endian) | nonce (12) | ciphertext+tag``.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import struct
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from postroom.core.keyfiles import MasterKey

FORMAT_MAGIC = b"P1"
NONCE_BYTES = 12
HEADER = struct.Struct(">2sI")
NONCE_LIMIT = 2**32


class DecryptionError(Exception):
    """A value could not be authenticated or its key is unavailable. Never shown to users."""


@dataclass(frozen=True)
class Field:
    """Where a value lives; bound into the associated data so ciphertexts cannot be moved."""

    table: str
    column: str
    row: str

    def associated_data(self, scope: str, version: int) -> bytes:
        joined = "\x00".join((scope, self.table, self.column, self.row, str(version)))
        if joined.count("\x00") != 4:
            raise ValueError("associated-data parts must not contain NUL")
        return joined.encode()


def wrap_data_key(master: MasterKey, data_key: bytes, *, scope: str, version: int) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = f"datakey\x00{scope}\x00{version}\x00{master.key_id}".encode()
    return nonce + AESGCM(master.key).encrypt(nonce, data_key, aad)


def unwrap_data_key(master: MasterKey, wrapped: bytes, *, scope: str, version: int) -> bytes:
    aad = f"datakey\x00{scope}\x00{version}\x00{master.key_id}".encode()
    try:
        return AESGCM(master.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError(f"the data key {scope} v{version} does not authenticate under master key {master.key_id}") from None


@functools.lru_cache(maxsize=256)
def _cipher(data_key: bytes) -> AESGCM:
    # Remembered: preparing the cipher costs more than sealing a short value with it.
    return AESGCM(data_key)


def encrypt_with(data_key: bytes, plaintext: bytes, *, scope: str, version: int, field: Field) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = _cipher(data_key).encrypt(nonce, plaintext, field.associated_data(scope, version))
    return HEADER.pack(FORMAT_MAGIC, version) + nonce + ciphertext


def key_version_of(value: bytes) -> int:
    if len(value) < HEADER.size + NONCE_BYTES + 16:
        raise DecryptionError("the value is too short to be a ciphertext")
    magic, version = HEADER.unpack_from(value)
    if magic != FORMAT_MAGIC:
        raise DecryptionError("the value is not in Postroom's ciphertext format")
    return int(version)


def decrypt_with(data_key: bytes, value: bytes, *, scope: str, field: Field) -> bytes:
    version = key_version_of(value)
    nonce = value[HEADER.size : HEADER.size + NONCE_BYTES]
    try:
        return _cipher(data_key).decrypt(nonce, value[HEADER.size + NONCE_BYTES :], field.associated_data(scope, version))
    except InvalidTag:
        raise DecryptionError(f"a value of {field.table}.{field.column} does not authenticate") from None


def blind_index(index_key: bytes, purpose: str, value: str) -> str:
    """A keyed HMAC for exact-match lookups of encrypted values (e.g. an address, a Message-ID)."""
    return hmac.digest(index_key, purpose.encode() + b"\x00" + value.encode(), "sha256").hex()


class UsageCounter:
    """Counts encryptions per data key in memory and flushes them to the database in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: dict[tuple[str, int], int] = {}

    def add(self, scope: str, version: int) -> None:
        with self._lock:
            self.pending[(scope, version)] = self.pending.get((scope, version), 0) + 1

    def drain(self) -> dict[tuple[str, int], int]:
        with self._lock:
            drained, self.pending = self.pending, {}
        return drained
