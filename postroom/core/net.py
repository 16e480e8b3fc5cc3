"""Small network facts shared by configuration checks."""

from __future__ import annotations

import ipaddress


def is_loopback_name(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; other names are not resolved here."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
