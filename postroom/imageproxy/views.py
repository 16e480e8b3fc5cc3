"""The image proxy, and the member's "always show images from this sender" choice.

Threat model of the proxy: the sender wants to learn that, when and where a message is read
(the reader's IP address and browser), and may use image URLs to reach inside our network
(SSRF) or to make our server fetch something huge or slow. Whoever holds a proxy URL may try to
use Postroom as an open proxy or to smuggle active content into our origin.

Defences:
- the browser never talks to the sender's server: images come from this origin only, and the
  sender sees our server's address, our User-Agent, no cookies and no Referer;
- only URLs we signed for a member are fetched (``links``), and only while that member is an
  active member of the organization: the proxy is not open;
- the fetch itself is ``postroom.core.fetch`` (public addresses only in every notation, the
  address pinned, each redirect re-checked, at most 10 MB and 20 seconds), and at most
  ``MAX_CONCURRENT_FETCHES`` run at once per process;
- the answer must be a raster image (PNG, JPEG, GIF, WebP, AVIF) by its first bytes, whatever
  the remote server declared (SVG is refused: it is a document with script and links). It is
  served with that type, ``nosniff``, ``Content-Security-Policy: sandbox`` and ``default-src
  'none'`` (opened directly, it is still inert), ``Content-Disposition: inline`` with a fixed
  name, and ``Cross-Origin-Resource-Policy: same-site`` (the sandboxed frame's opaque origin
  is refused by ``same-origin``);
- ``Cache-Control: no-store`` as on every page (what a member reads stays off shared disks); a
  small in-memory cache per process keeps recently fetched images for an hour, so reopening a
  message does not tell the sender again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from postroom.conversations import selectors as conversation_selectors
from postroom.core.fetch import FetchError, FetchLimits, fetch_public
from postroom.imageproxy import actions, links, selectors
from postroom.imageproxy.images import RASTER_TYPES, raster_type
from postroom.orgs.selectors import membership_get

logger = logging.getLogger(__name__)

PROXY_LIMITS = FetchLimits(max_bytes=10 * 1024 * 1024, connect_timeout=5, read_timeout=10, total_timeout=20, max_redirects=3)
ACCEPT = ", ".join(RASTER_TYPES) + ";q=0.9"
MAX_CONCURRENT_FETCHES = 8
IMAGE_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
CACHE_SECONDS = 3600
CACHE_MAX_BYTES = 64 * 1024 * 1024

_fetch_slots = threading.BoundedSemaphore(MAX_CONCURRENT_FETCHES)


class _ImageCache:
    """Recently fetched images by organization and URL (hashed), in memory only: never on disk."""

    def __init__(self, max_bytes: int, seconds: float) -> None:
        self.max_bytes, self.seconds = max_bytes, seconds
        self._entries: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str) -> str:
        return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, name: str) -> tuple[str, bytes] | None:
        key = self._key(name)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def put(self, name: str, content_type: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return
        key = self._key(name)
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (time.monotonic() + self.seconds, content_type, body)
            self._size += len(body)
            while self._size > self.max_bytes:
                self._remove(next(iter(self._entries)))

    def _remove(self, key: str) -> None:
        _expires, _type, body = self._entries.pop(key)
        self._size -= len(body)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0


image_cache = _ImageCache(CACHE_MAX_BYTES, CACHE_SECONDS)


def image_response(content: bytes, content_type: str) -> HttpResponse:
    """An image answer that stays an image: for the proxy and for inline parts of messages."""
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = 'inline; filename="image"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = IMAGE_POLICY
    response["Cross-Origin-Resource-Policy"] = "same-site"
    response["Referrer-Policy"] = "no-referrer"
    response._csp_exempt = True  # type: ignore[attr-defined]  # our own, stricter policy above
    return response


def _refusal(status: int, reason: str) -> HttpResponse:
    response = HttpResponse(f"Image not available: {reason}.", status=status, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = IMAGE_POLICY
    response["Cross-Origin-Resource-Policy"] = "same-site"
    response._csp_exempt = True  # type: ignore[attr-defined]
    return response


@require_GET
def image_proxy(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """A remote image of a message, fetched by the server. Authorised by the signed URL, not by
    the session: the sandboxed frame's requests carry no cookies (see ``links``)."""
    grant = links.proxy_grant(slug=slug, token=token)
    if grant is None or selectors.membership_for_link(membership_id=grant.membership_id, slug=slug) is None:
        raise Http404
    # Cached per organization: a hit must not tell one tenant what another one reads.
    cache_key = f"{slug} {grant.url}"
    cached = image_cache.get(cache_key)
    if cached is not None:
        return image_response(cached[1], cached[0])
    if not _fetch_slots.acquire(blocking=False):
        response = _refusal(503, "too many images are being fetched, try again")
        response["Retry-After"] = "5"
        return response
    try:
        # Slow I/O, outside any transaction; the view holds no database connection open for it.
        fetched = fetch_public(grant.url, accept=ACCEPT, limits=PROXY_LIMITS)
    except FetchError as error:
        # The reason is fixed text; the URL is message content and is never logged.
        logger.info("image proxy refused a fetch for membership %s: %s", grant.membership_id, error.reason)
        return _refusal(502, error.reason)
    finally:
        _fetch_slots.release()
    content_type = raster_type(fetched.body)
    if content_type is None or not fetched.content_type.startswith("image/") or fetched.content_type == "image/svg+xml":
        logger.info("image proxy refused a fetch for membership %s: not a raster image", grant.membership_id)
        return _refusal(415, "not an image type Postroom shows")
    image_cache.put(cache_key, content_type, fetched.body)
    return image_response(fetched.body, content_type)


@login_required
@require_POST
def image_sender_choice(request: HttpRequest, slug: str, message_id: str) -> HttpResponse:
    """Always show images from the sender of a message (``choice=always``), or ask again (``ask``)."""
    actor = membership_get(user=request.user, slug=slug)
    message = conversation_selectors.message_get(actor=actor, message_id=message_id)
    choice = request.POST.get("choice", "")
    if choice == "always":
        try:
            actions.image_sender_trust(actor=actor, message=message, request=request)
        except actions.NoSenderError as error:
            return HttpResponseBadRequest(str(error))
        messages.success(request, "Images from this sender will always be shown, through Postroom's image proxy.")
    elif choice == "ask":
        actions.image_sender_distrust(actor=actor, message=message, request=request)
        messages.success(request, "Images from this sender will be hidden until you ask for them.")
    else:
        return HttpResponseBadRequest("Unknown choice.")
    return redirect(reverse("conversations:detail", args=[actor.organization.slug, message.conversation_id]) + f"#message-{message.pk}")
