"""Showing a message's HTML body: the sandboxed frame, its images, and the notice above it.

Attacker: the sender, who writes the HTML and wants script in our origin, or to learn that,
when and where the message was read (SECURITY.md R27-R29, R32). Defences, layer by layer:

- ``postroom.mime.sanitize`` removes everything active and every remote reference; remote
  images come back only through the image proxy (``postroom.imageproxy``), after the member
  asks ("Show images" for one message, or "always" for one sender);
- the body is served from its own URL into ``<iframe sandbox>`` without ``allow-scripts`` or
  ``allow-same-origin`` (``allow-popups`` and ``allow-popups-to-escape-sandbox`` only, so that
  links open in a new tab; they carry ``noopener noreferrer``). That response alone may be
  framed, by our pages only, under its own CSP: ``default-src 'none'``, inline styles, and
  images from ``data:``, this message's inline parts and, once shown, the proxy: no other
  path or host, so even a sanitiser bypass fetches nothing else;
- ``cid:`` images are this message's inline parts, served under capability URLs that the
  frame's opaque origin can use without cookies (``postroom.imageproxy.links``): the grant is
  re-checked on each request with the conversations selectors (404 for anyone who cannot see
  the message), and only raster images recognised by their content are served.

Pages that show messages call ``HtmlBodies(request=..., actor=...).display(message)`` and
render ``conversations/_message_html.html`` (the conversation page from ``page_markup``, which
also draws plain-text bodies from their escaped blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from csp.decorators import csp_exempt
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from postroom.conversations import selectors
from postroom.conversations.bodies import messages_with_bodies
from postroom.conversations.models import Message
from postroom.core.blobs import blob_get
from postroom.core.keys import keyring
from postroom.imageproxy import links
from postroom.imageproxy import selectors as image_selectors
from postroom.imageproxy.images import raster_type
from postroom.imageproxy.views import image_response
from postroom.mime.sanitize import SanitizedHtml, sanitize_html
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_get

SHOW_IMAGES_PARAMETER = "show_images"  # on the conversation page: message ids to show images of
FRAME_IMAGES_PARAMETER = "images"  # on the frame: "show"
CONTENT_ID_PURPOSE = "content-id"  # as in conversations.ingest

# The frame's own stylesheet. Blocked images keep their <img> with size and alt text: drawn as
# a light box, so the layout keeps its shape and the reader sees where images were.
FRAME_STYLE = (
    "html{color-scheme:light}"
    "body{margin:8px;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;background:#fff;overflow-wrap:anywhere}"
    "img{max-width:100%}"
    "img:not([src]){display:inline-block;box-sizing:border-box;min-width:24px;min-height:24px;background:#eef0f3;"
    "outline:1px dashed #c3c8cf;outline-offset:-1px;color:#59636e;font-size:12px;overflow:hidden;vertical-align:top}"
    "table{border-collapse:collapse}"
    "blockquote{margin:0 0 0 .8ex;border-left:2px solid #d0d7de;padding-left:1ex;color:#424a53}"
)


def frame_policy(*, inline_prefix: str, proxy_prefix: str | None) -> str:
    """The frame's CSP: images only from ``data:``, this message's inline parts and the proxy."""
    image_sources = " ".join(["data:", inline_prefix, *([proxy_prefix] if proxy_prefix else [])])
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src {image_sources}; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    )


@dataclass(frozen=True)
class HtmlBody:
    """What the conversation page shows about one HTML body (``_message_html.html``)."""

    message: Message
    frame_url: str
    images_shown: bool
    remote_blocked: int
    trackers_removed: int
    sender_trusted: bool
    show_images_url: str
    hide_images_url: str
    sender_choice_url: str | None  # None when the message has no sender address


def _count_only(url: str) -> str:
    return "/"


class HtmlBodies:
    """HTML bodies for one page of one member: the member's trusted senders are read once."""

    def __init__(self, *, request: HttpRequest, actor: Membership) -> None:
        self.request = request
        self.actor = actor
        self.requested = set(request.GET.getlist(SHOW_IMAGES_PARAMETER))

    @cached_property
    def trusted_senders(self) -> frozenset[str]:
        return image_selectors.trusted_sender_indexes(actor=self.actor)

    def sender_trusted(self, message: Message) -> bool:
        if not self.trusted_senders:
            return False
        index = image_selectors.sender_index(message=message)
        return index is not None and index in self.trusted_senders

    def display(self, message: Message) -> HtmlBody:
        slug = self.actor.organization.slug
        trusted = self.sender_trusted(message)
        shown = trusted or str(message.pk) in self.requested
        counted = sanitize_html(message.html_body or "", allow_remote=shown, proxy=_count_only)
        frame_url = reverse("conversations:html_frame", args=[slug, message.pk])
        has_sender = image_selectors.sender_address(message=message) is not None
        return HtmlBody(
            message=message,
            frame_url=f"{frame_url}?{FRAME_IMAGES_PARAMETER}=show" if shown else frame_url,
            images_shown=shown,
            remote_blocked=counted.remote_blocked,
            trackers_removed=counted.trackers_removed,
            sender_trusted=trusted,
            show_images_url=f"{self.request.path}?{SHOW_IMAGES_PARAMETER}={message.pk}#message-{message.pk}",
            hide_images_url=f"{self.request.path}#message-{message.pk}",
            sender_choice_url=reverse("imageproxy:sender_choice", args=[slug, message.pk]) if has_sender else None,
        )


def _frame_html(actor: Membership, message: Message, *, show_images: bool) -> SanitizedHtml:
    scope = message.key_scope()
    inline_indexes = {attachment.content_id for attachment in message.attachments.all() if attachment.content_id}

    def inline(content_id: str) -> str | None:
        index = keyring().blind_index(scope, CONTENT_ID_PURPOSE, content_id)
        return links.inline_url(actor=actor, message=message, content_index=index) if index in inline_indexes else None

    def proxy(url: str) -> str:
        return links.proxy_url(actor=actor, url=url)

    return sanitize_html(message.html_body or "", allow_remote=show_images, proxy=proxy, inline=inline)


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
@xframe_options_sameorigin
def message_html_frame(request: HttpRequest, slug: str, message_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    [message] = messages_with_bodies([selectors.message_get(actor=actor, message_id=message_id)])  # parsed now if still pending
    bodies = HtmlBodies(request=request, actor=actor)
    show_images = request.GET.get(FRAME_IMAGES_PARAMETER) == "show" or bodies.sender_trusted(message)
    sanitized = _frame_html(actor, message, show_images=show_images)
    document = (
        '<!doctype html><html><head><meta charset="utf-8"><base target="_blank">'
        f"<style>{FRAME_STYLE}</style></head><body>{sanitized.html}</body></html>"
    )
    inline_prefix = request.build_absolute_uri(reverse("conversations:inline_image", args=[slug, message.pk, "-"]))[:-2]
    proxy_prefix = request.build_absolute_uri(reverse("imageproxy:proxy", args=[slug, "-"]))[:-2] if show_images else None
    response = HttpResponse(document, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = frame_policy(inline_prefix=inline_prefix, proxy_prefix=proxy_prefix)
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def message_inline_image(request: HttpRequest, slug: str, message_id: str, token: str) -> HttpResponse:
    """A ``cid:`` image of a message, for its frame. Authorised by the signed URL (the frame
    sends no cookies), then by the same rules as every other read of the message."""
    grant = links.inline_grant(slug=slug, message_id=message_id, token=token)
    actor = image_selectors.membership_for_link(membership_id=grant.membership_id, slug=slug) if grant else None
    if grant is None or actor is None:
        raise Http404
    message = selectors.message_get(actor=actor, message_id=message_id)  # 404 once they cannot see it
    attachment = message.attachments.filter(content_id=grant.content_index).order_by("pk").first()
    if attachment is None:
        raise Http404
    content = blob_get(attachment.key_scope(), attachment.blob)
    content_type = raster_type(content)
    if content_type is None:
        raise Http404  # an inline part that is not a raster image is never shown in the frame
    return image_response(content, content_type)
