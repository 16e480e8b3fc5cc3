"""Request facts that security decisions depend on."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, trusting ``X-Forwarded-For`` only for the configured proxy hops.

    With no trusted proxies (the default) the header is ignored entirely, so a client cannot
    pick the address that rate limits and the audit log see.
    """
    address = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def wants_partial(request: HttpRequest) -> bool:
    """An htmx request that swaps part of the page (not a boosted one, which wants the page)."""
    details = getattr(request, "htmx", None)
    return bool(details) and not getattr(details, "boosted", False)
