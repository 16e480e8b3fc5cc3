"""The minimal conversation list and view (the full team inbox is issue #4).

Attacker: whoever sends mail to a member writes the subject, names, bodies and attachments
shown here. Defences, per SECURITY.md R27, R28, R29, R32:
- every header value is rendered through Django's auto-escaping; plain text through
  ``postroom.mime.text`` (escaped, then linkified);
- HTML bodies are sanitised (``postroom.mime.sanitize``, remote content blocked) and served from
  a separate URL into an ``<iframe sandbox>`` with neither ``allow-scripts`` nor
  ``allow-same-origin``: even a sanitiser bypass runs no script and reads nothing of ours. That
  response alone may be framed, by our own pages only, and its CSP allows inline styles and
  ``data:`` images and nothing else;
- attachments and raw sources are downloads only (``Content-Disposition: attachment``, a served
  type from an allowlist, ``nosniff``, ``CSP: sandbox``), access-checked and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from csp.decorators import csp_exempt
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from postroom.conversations import actions, selectors
from postroom.conversations.bodies import messages_with_bodies
from postroom.conversations.models import Message
from postroom.core.blobs import blob_get
from postroom.mime.filenames import content_disposition, served_content_type
from postroom.mime.sanitize import sanitize_html
from postroom.mime.text import BlockKind, TextBlock, text_blocks
from postroom.orgs.selectors import membership_get

FRAME_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
DOWNLOAD_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'"
_FOLDED = frozenset({BlockKind.QUOTE, BlockKind.ATTRIBUTION, BlockKind.SIGNATURE})


@dataclass
class ShownBlock:
    block: TextBlock
    folded: bool


def _participants(messages: list[Message]) -> list[str]:
    names: dict[str, str] = {}
    for message in messages:
        addresses = message.addresses or {}
        for pair in [*addresses.get("from", []), *addresses.get("to", []), *addresses.get("cc", [])]:
            if len(pair) == 2 and pair[1]:
                names.setdefault(pair[1].lower(), pair[0] or pair[1])
    return list(names.values())


@login_required
@require_GET
def conversation_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    rows: list[dict[str, Any]] = []
    for conversation in selectors.conversations_visible(actor=actor)[:100]:
        messages = list(selectors.conversation_messages(actor=actor, conversation=conversation))
        rows.append({
            "conversation": conversation, "participants": _participants(messages)[:4],
            # Empty until the body pass has reached the message (conversations.bodies).
            "snippet": (messages[-1].snippet or "") if messages else "", "count": len(messages),
        })  # fmt: skip
    return render(request, "conversations/list.html", {"organization": actor.organization, "rows": rows, "nav": "conversations"})


@login_required
@require_GET
def conversation_detail(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    shown = []
    # Bodies the body pass has not reached yet are parsed now (stored, so once).
    for message in messages_with_bodies(list(selectors.conversation_messages(actor=actor, conversation=conversation))):
        blocks = [] if message.html_body else [ShownBlock(block, block.kind in _FOLDED) for block in text_blocks(message.text_body or "")]
        shown.append({"message": message, "addresses": message.addresses or {}, "blocks": blocks})
    unread = selectors.conversation_has_unread(actor=actor, conversation=conversation)
    return render(request, "conversations/detail.html", {
        "organization": actor.organization, "conversation": conversation, "shown": shown, "nav": "conversations", "unread": unread,
    })  # fmt: skip


@login_required
@require_POST
def conversation_change(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    """Mark read/unread, archive or trash: always an explicit POST from the conversation page.
    Opening the page does not mark it read, because a GET changes nothing (and link previews or
    prefetching would otherwise read mail on the member's behalf, on their server too)."""
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    change = request.POST.get("change", "")
    if change in ("read", "unread"):
        actions.conversation_mark_read(actor=actor, conversation=conversation, read=change == "read", request=request)
        messages.success(request, f"Marked as {change}.")
        return redirect("conversations:detail", slug=actor.organization.slug, conversation_id=conversation.pk)
    if change == "archive":
        moved = actions.conversation_archive(actor=actor, conversation=conversation, request=request)
        messages.success(request, "Archived." if moved else "Nothing to archive: no message of it is in your inbox.")
    elif change == "trash":
        moved = actions.conversation_trash(actor=actor, conversation=conversation, request=request)
        messages.success(request, "Moved to the trash." if moved else "Nothing to move: the server offers no Trash folder.")
    else:
        return HttpResponseBadRequest("Unknown change.")
    return redirect("conversations:list", slug=actor.organization.slug)


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
@xframe_options_sameorigin
def message_html_frame(request: HttpRequest, slug: str, message_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    [message] = messages_with_bodies([selectors.message_get(actor=actor, message_id=message_id)])
    sanitized = sanitize_html(message.html_body or "")
    document = f'<!doctype html><html><head><meta charset="utf-8"></head><body>{sanitized.html}</body></html>'
    response = HttpResponse(document, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = FRAME_POLICY
    return response


def _download(content: bytes, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=served_content_type(content_type))
    response["Content-Disposition"] = content_disposition(filename)
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
def attachment_download(request: HttpRequest, slug: str, attachment_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    attachment = selectors.attachment_get(actor=actor, attachment_id=attachment_id)
    content = blob_get(attachment.key_scope(), attachment.blob)
    actions.attachment_download_record(actor=actor, attachment=attachment, request=request)
    return _download(content, attachment.filename or "", attachment.content_type)


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
def message_raw(request: HttpRequest, slug: str, message_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    message = selectors.message_get(actor=actor, message_id=message_id)
    content = blob_get(message.key_scope(), message.raw_blob)
    actions.raw_message_download_record(actor=actor, message=message, request=request)
    # Served as an opaque file, never as message/rfc822, which some browsers would render.
    return _download(content, "message.eml", "application/octet-stream")
