"""Composer and outbox pages. Shape of every view: parse → access (selectors) → action → render.

A member sends only from mailboxes they own and answers only conversations that reached one of
them; everything else is 404. State changes are POST only, with CSRF.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.conversations.models import Conversation
from postroom.mime.build import OutgoingAttachment
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_get
from postroom.outbox import actions, compose, selectors
from postroom.outbox.forms import ComposeForm
from postroom.outbox.models import OutgoingKind
from postroom.responses import selectors as response_selectors
from postroom.responses.actions import response_attachment_content

MAX_ATTACHMENT_FILES = 20
REPLY_KINDS = (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL, OutgoingKind.FORWARD)


def _addresses(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{name}" <{address}>' if name else address for name, address in pairs)


def _attachments(request: HttpRequest, actor: Membership) -> list[OutgoingAttachment]:
    """Uploaded files, then the files of responses the member inserted (the picker's hidden
    ``response_attachment`` inputs; see postroom/responses/static/responses/picker.js), resolved
    again here through the responses selectors: only attachments of responses the member can
    use are sent, and one that is gone is an error, not a silent omission."""
    files = request.FILES.getlist("attachments")[:MAX_ATTACHMENT_FILES]
    uploaded = [
        OutgoingAttachment(
            filename=upload.name or "attachment", content_type=upload.content_type or "application/octet-stream", content=upload.read()
        )
        for upload in files
    ]
    wanted = list(dict.fromkeys(request.POST.getlist("response_attachment")))[:MAX_ATTACHMENT_FILES]
    stored = response_selectors.attachments_for_sending(actor=actor, attachment_ids=wanted)
    if len(stored) != len(wanted):
        raise ValidationError({"attachments": ["An attachment of an inserted response is no longer available; insert the response again."]})
    return uploaded + [
        OutgoingAttachment(filename=attachment.filename or "attachment", content_type=attachment.content_type,
                           content=response_attachment_content(attachment))
        for attachment in stored
    ]  # fmt: skip


def _compose(request: HttpRequest, actor: Membership, kind: str, conversation: Conversation | None) -> HttpResponse:
    mailboxes = selectors.sending_mailboxes(actor=actor)
    if request.method == "POST":
        form = ComposeForm(request.POST, mailboxes=mailboxes)
        if form.is_valid():
            data = form.cleaned_data
            try:
                actions.outgoing_create(
                    actor=actor, mailbox=data["mailbox"], kind=kind, conversation=conversation,
                    to=data["to"], cc=data["cc"], bcc=data["bcc"], subject=data["subject"], text=data["text"],
                    attachments=_attachments(request, actor), request=request,
                )  # fmt: skip
            except ValidationError as error:
                for field, field_messages in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, field_messages)
            else:
                messages.success(request, "Your message is queued for sending.")
                return HttpResponseRedirect(reverse("outbox:list", args=[actor.organization.slug]))
    else:
        initial: dict[str, object] = {"mailbox": mailboxes.first()}
        if conversation is not None:
            first_mailbox = mailboxes.first()
            if first_mailbox is not None:
                draft = compose.draft_for(mailbox=first_mailbox, conversation=conversation, kind=kind)
                initial.update(
                    to=_addresses(draft.to),
                    cc=_addresses(draft.cc),
                    subject=draft.subject,
                    text=f"\n\n{draft.quote}" if draft.quote else "",
                )
        form = ComposeForm(initial=initial, mailboxes=mailboxes)
    return render(request, "outbox/compose.html", {
        "organization": actor.organization, "form": form, "kind": kind, "kind_label": OutgoingKind(kind).label,
        "conversation": conversation, "has_mailbox": mailboxes.exists(), "nav": "outbox",
    })  # fmt: skip


@login_required
@require_http_methods(["GET", "POST"])
def compose_new(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    return _compose(request, actor, OutgoingKind.NEW, None)


@login_required
@require_http_methods(["GET", "POST"])
def compose_reply(request: HttpRequest, slug: str, conversation_id: UUID) -> HttpResponse:
    kind = request.GET.get("kind", OutgoingKind.REPLY)
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    if kind not in REPLY_KINDS:
        kind = OutgoingKind.REPLY
    return _compose(request, actor, kind, conversation)


@login_required
@require_GET
def outgoing_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    return render(request, "outbox/list.html", {
        "organization": actor.organization, "outgoing": selectors.outgoing_messages(actor=actor)[:200], "nav": "outbox",
    })  # fmt: skip


@login_required
@require_POST
def outgoing_retry(request: HttpRequest, slug: str, outgoing_id: UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    outgoing = selectors.outgoing_get(actor=actor, outgoing_id=outgoing_id)
    try:
        actions.outgoing_retry(actor=actor, outgoing=outgoing, request=request)
        messages.success(request, "The message is queued again.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return HttpResponseRedirect(reverse("outbox:list", args=[slug]))
