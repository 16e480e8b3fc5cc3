"""The key files under the data directory: Django's secret key and the master key.

Threat: someone who reads the database, a backup or the logs must not obtain a key. So both
keys live in files of their own (mode 0600), are created with ``O_EXCL`` (two processes starting
together cannot each write a different key), are never printed, and can instead come from a
secret store through ``POSTROOM_SECRET_KEY_FILE`` / ``POSTROOM_MASTER_KEY_FILE``.

The master key file holds one key per line as ``<key id>:<base64 of 32 bytes>``. The first line
is the current key, which wraps data keys; the other lines are older keys, kept only so that a
rotation can unwrap what they wrapped (see ``postroom keys rotate``).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from postroom.core.env import ConfigError

MASTER_KEY_BYTES = 32


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes


def create_private_file(path: Path, content: str) -> bool:
    """Write ``content`` to a new 0600 file; False when the file already exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    return True


def keep_private(path: Path) -> Path:
    """Make ``path`` a 0600 file (an empty one if missing) and return it.

    For the SQLite database: SQLite gives its -wal and -shm files the mode of the database file,
    so creating that file private first keeps every copy of the data unreadable to other users.
    """
    if not create_private_file(path, "") and path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


def load_or_create_secret_key(path: Path) -> str:
    create_private_file(path, secrets.token_urlsafe(64) + "\n")
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < 50:
        raise ConfigError("POSTROOM_SECRET_KEY", f"the key in {path} is shorter than 50 characters", "delete the file to have a new one generated")
    return value


def new_master_key_line() -> str:
    key_id = secrets.token_hex(4)
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()}"


def parse_master_keys(text: str, source: str) -> list[MasterKey]:
    keys: list[MasterKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, separator, encoded = line.partition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            key = b""
        if not separator or not key_id or len(key) != MASTER_KEY_BYTES:
            raise ConfigError(
                "POSTROOM_MASTER_KEY_FILE",
                f"line {number} of {source} is not '<id>:<base64 of 32 bytes>'",
                "restore the file from your secret store; never edit it by hand",
            )
        keys.append(MasterKey(key_id=key_id, key=key))
    if not keys:
        raise ConfigError("POSTROOM_MASTER_KEY_FILE", f"{source} holds no key", "restore the file from your secret store")
    if len({key.key_id for key in keys}) != len(keys):
        raise ConfigError("POSTROOM_MASTER_KEY_FILE", f"{source} repeats a key id", "restore the file from your secret store")
    return keys


def load_master_keys(path: Path, *, create: bool) -> list[MasterKey]:
    """The master keys, current first. Creates the file only when ``create`` (the data-dir default)."""
    if create:
        create_private_file(path, new_master_key_line() + "\n")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            "POSTROOM_MASTER_KEY_FILE",
            f"cannot read the master key at {path} ({error.strerror})",
            "point POSTROOM_MASTER_KEY_FILE at the key file from your secret store; Postroom never runs without it",
        ) from None
    return parse_master_keys(text, str(path))


def prepend_master_key(path: Path) -> MasterKey:
    """Add a new current key at the top of the file, keeping the old ones (atomic replace)."""
    line = new_master_key_line()
    old = path.read_text(encoding="utf-8")
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    create_private_file(temporary, line + "\n" + old)
    os.replace(temporary, path)
    return parse_master_keys(line, str(path))[0]
