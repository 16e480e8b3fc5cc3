"""The minimal conversation list and view (the full team inbox is issue #4).

Attacker: whoever sends mail to a member writes the subject, names, bodies and attachments
shown here. Defences, per SECURITY.md R27, R28, R29, R32:
- every header value is rendered through Django's auto-escaping; plain text through
  ``postroom.mime.text`` (escaped, then linkified);
- HTML bodies are sanitised (``postroom.mime.sanitize``, remote content blocked) and served from
  a separate URL into an ``<iframe sandbox>`` with neither ``allow-scripts`` nor
  ``allow-same-origin``: see ``views_frame``, which also serves inline images and decides when
  remote images are shown (through ``postroom.imageproxy``);
- attachments and raw sources are downloads only (``Content-Disposition: attachment``, a served
  type from an allowlist, ``nosniff``, ``CSP: sandbox``), access-checked and audited.
"""

from __future__ import annotations

from typing import Any

from csp.decorators import csp_exempt
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from postroom.conversations import actions, selectors
from postroom.conversations.models import Message
from postroom.conversations.views_frame import HtmlBodies, text_body_blocks
from postroom.core.blobs import blob_get
from postroom.mime.filenames import content_disposition, served_content_type
from postroom.orgs.selectors import membership_get

DOWNLOAD_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'"


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
            "snippet": messages[-1].snippet if messages else "", "count": len(messages),
        })  # fmt: skip
    return render(request, "conversations/list.html", {"organization": actor.organization, "rows": rows, "nav": "conversations"})


@login_required
@require_GET
def conversation_detail(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    shown = []
    bodies = HtmlBodies(request=request, actor=actor)  # images: blocked, shown once, or always (views_frame)
    for message in selectors.conversation_messages(actor=actor, conversation=conversation):
        html = bodies.display(message) if message.html_body else None
        shown.append(
            {"message": message, "addresses": message.addresses or {}, "html": html, "blocks": [] if html else text_body_blocks(message)}
        )
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
