"""Capability URLs for the images inside the message frame (proxied remote images, cid: parts).

Why not the session: the frame is sandboxed without ``allow-same-origin``, so its origin is
opaque and the browser treats every request it makes as cross-site. ``SameSite=Lax`` session
cookies are not sent with them (Chromium marks them ``Sec-Fetch-Site: cross-site``), so the
image URLs must carry their own authority.

Each URL holds a token signed with an HMAC keyed from the secret key (``django.core.signing``,
SHA-256, one salt per purpose) that binds the member, the organization's slug, the object (the
remote URL, or the message and the blind index of the part's Content-ID) and an expiry. The
views re-check on every request that the member still exists, is active and (for parts) can
still see the message, so a copied URL is worth nothing to anyone but that member and dies
within two hours at the most. The expiry is rounded to the hour so the same image has the same
URL across page views within the hour. Nothing here can name a URL we did not sign: the proxy
is not an open proxy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.urls import reverse

from postroom.conversations.models import Message
from postroom.orgs.models import Membership

WINDOW_SECONDS = 3600
_PROXY_SALT = "postroom.imageproxy.remote"
_INLINE_SALT = "postroom.imageproxy.inline"


@dataclass(frozen=True, slots=True)
class RemoteGrant:
    membership_id: int
    url: str


@dataclass(frozen=True, slots=True)
class InlineGrant:
    membership_id: int
    content_index: str


def _signer(salt: str) -> signing.Signer:
    return signing.Signer(salt=salt, algorithm="sha256")


def _expiry(now: float | None) -> int:
    current = int(time.time() if now is None else now)
    return (current // WINDOW_SECONDS + 2) * WINDOW_SECONDS


def _read(token: str, salt: str, now: float | None) -> dict[str, Any] | None:
    try:
        payload = _signer(salt).unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
        return None
    if payload["e"] < (time.time() if now is None else now):
        return None
    return payload


def proxy_url(*, actor: Membership, url: str, now: float | None = None) -> str:
    token = _signer(_PROXY_SALT).sign_object({"m": actor.pk, "o": actor.organization.slug, "u": url, "e": _expiry(now)}, compress=True)
    return reverse("imageproxy:proxy", args=[actor.organization.slug, token])


def proxy_grant(*, slug: str, token: str, now: float | None = None) -> RemoteGrant | None:
    payload = _read(token, _PROXY_SALT, now)
    if payload is None or payload.get("o") != slug or not isinstance(payload.get("m"), int) or not isinstance(payload.get("u"), str):
        return None
    return RemoteGrant(membership_id=payload["m"], url=payload["u"])


def inline_url(*, actor: Membership, message: Message, content_index: str, now: float | None = None) -> str:
    token = _signer(_INLINE_SALT).sign_object(
        {"m": actor.pk, "o": actor.organization.slug, "i": str(message.pk), "c": content_index, "e": _expiry(now)}
    )
    return reverse("conversations:inline_image", args=[actor.organization.slug, message.pk, token])


def inline_grant(*, slug: str, message_id: str, token: str, now: float | None = None) -> InlineGrant | None:
    payload = _read(token, _INLINE_SALT, now)
    if (
        payload is None or payload.get("o") != slug or payload.get("i") != message_id
        or not isinstance(payload.get("m"), int) or not isinstance(payload.get("c"), str)
    ):  # fmt: skip
        return None
    return InlineGrant(membership_id=payload["m"], content_index=payload["c"])


def path_prefix(url: str) -> str:
    """The directory of a capability URL (for a CSP source that allows exactly that path)."""
    return url.rstrip("/").rsplit("/", 1)[0] + "/"
