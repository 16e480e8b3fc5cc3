"""Typed configuration from environment variables.

Every setting Postroom reads comes through these helpers so that a bad value stops start-up
with one message that names the variable and says how to fix it. Secrets can also be given as
a file (``NAME_FILE=/run/secrets/name``), which keeps them out of process listings and
``/proc/<pid>/environ``.

Error messages end up in service logs, so they never repeat a secret: a URL is shown with its
user name and password replaced by ``***``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


def redact_url(value: str) -> str:
    """``value`` with any ``user:password@`` part masked, safe to print or log."""
    scheme, separator, rest = value.partition("://")
    if not separator:
        return value
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return value
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message says which and how to fix."""

    def __init__(self, variable: str, problem: str, fix: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}. Fix: {fix}")


class Env:
    """Reads typed values from a mapping (``os.environ`` unless a test passes its own)."""

    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self.source = os.environ if source is None else source

    def raw(self, name: str) -> str | None:
        value = self.source.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def string(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value

    def secret(self, name: str) -> str | None:
        """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (not both)."""
        direct = self.raw(name)
        file_name = self.raw(f"{name}_FILE")
        if direct is not None and file_name is not None:
            raise ConfigError(name, f"both {name} and {name}_FILE are set", "set only one of them")
        if file_name is None:
            return direct
        try:
            content = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"{name}_FILE", f"cannot read {file_name!r} ({error.strerror})", "point it at a readable file"
            ) from None
        if not content:
            raise ConfigError(f"{name}_FILE", f"{file_name!r} is empty", "put the secret in the file")
        return content

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(name, f"{value!r} is not a boolean", "use true or false")

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not a whole number", "use digits only, e.g. 25") from None
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ConfigError(name, f"{number} is out of range", f"use a number from {minimum} to {maximum}")
        return number

    def strings(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def url(self, name: str, default: str = "", *, schemes: tuple[str, ...] = ("http", "https")) -> str:
        value = self.string(name, default)
        if not value:
            return value
        fix = f"use a URL starting with {' or '.join(s + '://' for s in schemes)}"
        try:
            parts = urlsplit(value)
            valid = parts.scheme in schemes and bool(parts.hostname)
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(name, f"{redact_url(value)!r} is not a valid URL", fix)
        return value

    def readable_file(self, name: str) -> str:
        """A path that must name a readable file when set ('' when unset)."""
        value = self.string(name)
        if value and not (Path(value).is_file() and os.access(value, os.R_OK)):
            raise ConfigError(name, f"{value!r} is not a readable file", "point it at an existing file the server can read, or unset it")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise ConfigError(name, f"{value!r} is not one of the allowed values", f"use one of: {', '.join(choices)}")
        return value
