"""The event stream of an organization: ``GET /o/<slug>/events/`` (server-sent events).

Attackers (SECURITY.md R19): a page of another site that opens the stream with the member's
cookies (cross-site WebSocket/SSE hijacking) to learn when their mail moves; a member who listens
for conversations they cannot see, or another organization's; a member whose session has ended
and who keeps the stream open; anyone who opens thousands of streams to exhaust the server.

Defences:
- ``Origin`` must be the site's own (``CSRF_TRUSTED_ORIGINS``, i.e. the public URL) when a
  browser sends one, and ``Sec-Fetch-Site``, when sent, must say same-origin: anything else is
  refused (403) before the session is read. (The session cookie is ``SameSite=Lax`` as well, so
  a cross-site subresource request carries no session in the first place.)
- The session and the membership of the organization are required as for any page; an outsider
  gets 404, as for every tenant URL. The stream then re-checks the session every minute, and at
  once after a logout or a credential change (``live.hub``), and ends when it no longer holds.
- Each event is authorised per stream at delivery (``live.selectors``) and carries a
  conversation id and a kind, never content: the page re-fetches what it shows through the
  ordinary, access-checked views.
- At most ``MAX_STREAMS_PER_USER`` streams per user and web process (429 beyond); the tabs of
  one browser share one stream (``static/postroom/live.js``).

The stream: ``retry:``, then any events missed since ``Last-Event-ID`` (or ``event: resync`` when
they are no longer known), then ``event: ready``, then ``event: conversation`` as things happen
(``{"conversation": "<uuid>", "kind": "assigned"}``), a comment every ``HEARTBEAT_SECONDS`` so
proxies and dead peers are noticed, and ``event: end`` when the session ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from postroom.live import hub as hubs
from postroom.live.bus import close_thread_connections
from postroom.live.events import Event, cursor_decode, cursor_encode, sse_message, sse_payload
from postroom.live.selectors import StreamGrant
from postroom.orgs.selectors import membership_get

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
UNAVAILABLE_RETRY_MILLISECONDS = 15000
_SAME_SITE_FETCHES = frozenset({"same-origin", "none"})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def foreign_request(request: HttpRequest) -> bool:
    """Whether a browser says this request comes from a page of another origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in {_origin(url) for url in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    fetch_site = request.headers.get("Sec-Fetch-Site")
    return fetch_site is not None and fetch_site not in _SAME_SITE_FETCHES


@require_GET
async def event_stream(request: HttpRequest, slug: str) -> HttpResponseBase:
    # The origin first: a foreign page learns nothing, not even whether the member is signed in.
    if foreign_request(request):
        return HttpResponseForbidden("Live updates are only for Postroom's own pages.", content_type="text/plain")
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    membership = await sync_to_async(membership_get)(user=user, slug=slug)
    if not isinstance(request, ASGIRequest):
        # Under WSGI an endless stream would hold a worker thread for good: Postroom serves
        # through uvicorn (``postroom web``); Django's test client lands here too.
        return HttpResponse("Live updates need Postroom's ASGI server.", status=501, content_type="text/plain")
    user_id = int(membership.user_id)
    session_key = request.session.session_key or ""
    hub = hubs.get_hub()
    if hub.streams_of(user_id) >= hubs.MAX_STREAMS_PER_USER:
        return HttpResponse("Too many open live-update streams; close some tabs.", status=429, content_type="text/plain")
    grant = StreamGrant(session_key=session_key, user_id=user_id, membership_id=membership.pk)
    # The browser sends Last-Event-ID when it reconnects; a page opening its stream passes the
    # position it was rendered at (``?after=``, see ``live.templatetags.live``).
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("after")
    response = StreamingHttpResponse(
        _stream(hub, grant, membership.organization_id, last_event_id), content_type="text/event-stream; charset=utf-8"
    )
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _message(item: hubs.Item, cursor: Callable[[int], str]) -> str:
    if isinstance(item, Event):
        return sse_message(event="conversation", data=sse_payload(item), cursor=cursor(item.sequence))
    if isinstance(item, hubs.Resync):
        return sse_message(event="resync", data={}, cursor=cursor(item.position))
    return sse_message(event="end", data={})


async def _stream(hub: hubs.Hub, grant: StreamGrant, organization_id: int, last_event_id: str | None) -> AsyncIterator[str]:
    # The response has passed the middleware (which saved the session): the request's thread
    # needs its database connection no more, and a stream lasts for hours.
    await sync_to_async(close_thread_connections)()

    def cursor(sequence: int) -> str:
        return cursor_encode(sequence, user_id=grant.user_id, organization_id=organization_id)

    resume_from = None
    if last_event_id:
        # An unreadable cursor means "I missed something, I do not know what": resync.
        resume_from = cursor_decode(last_event_id, user_id=grant.user_id, organization_id=organization_id)
        resume_from = -1 if resume_from is None else resume_from
    try:
        opening = await hub.subscribe(grant=grant, organization_id=organization_id, resume_from=resume_from)
    except hubs.TooManyStreamsError:
        yield sse_message(event="end", data={"reason": "too_many_streams"})
        return
    except Exception as error:
        # The bus cannot be reached (Redis down, the database busy): the page tries again later.
        logger.warning("live: a stream could not start (%s)", type(error).__name__)
        yield f"retry: {UNAVAILABLE_RETRY_MILLISECONDS}\n\n"
        return
    subscriber = opening.subscriber
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        for item in opening.first:
            yield _message(item, cursor)
        yield sse_message(event="ready", data={}, cursor=cursor(opening.position))
        while True:
            try:
                item = await asyncio.wait_for(subscriber.queue.get(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield _message(item, cursor)
            if isinstance(item, hubs.End):
                return
    finally:
        hub.unsubscribe(subscriber)
