"""Composer, drafts and outbox pages. Shape of every view: parse → access (selectors) → action → render.

A member sends only from mailboxes they own, answers only conversations they can see, and sees
and changes only their own drafts and outgoing messages; everything else is 404. State changes
are POST only, with CSRF. The composer works as a plain form; with JavaScript it sits inside the
conversation page and saves a draft as the member types (``draft_save``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.conversations import actions as conversation_actions
from postroom.conversations.models import Conversation
from postroom.conversations.views import nav_context
from postroom.core.http import wants_partial
from postroom.mime.build import OutgoingAttachment
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_get
from postroom.outbox import actions, selectors
from postroom.outbox.forms import ComposeForm, DraftForm, composer_initial
from postroom.outbox.models import Draft, OutgoingKind
from postroom.responses import selectors as response_selectors
from postroom.responses.actions import response_attachment_content

MAX_ATTACHMENT_FILES = actions.MAX_ATTACHMENT_FILES
REPLY_KINDS = (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL, OutgoingKind.FORWARD)


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


def _kind(request: HttpRequest, default: str) -> str:
    kind = request.POST.get("kind") or request.GET.get("kind") or default
    return kind if kind in OutgoingKind.values else default


def _next_url(request: HttpRequest) -> str | None:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return None


def _draft_from(request: HttpRequest, actor: Membership, data: dict[str, Any] | None = None) -> Draft | None:
    """The draft the form names (a hidden field): the actor's own, else 404."""
    draft_id = (data or {}).get("draft") or request.POST.get("draft") or request.GET.get("draft")
    return selectors.draft_get(actor=actor, draft_id=draft_id) if draft_id else None


def composer_context(
    request: HttpRequest, actor: Membership, kind: str, conversation: Conversation | None, draft: Draft | None,
    form: ComposeForm | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Everything ``outbox/_composer_form.html`` needs (the conversation page includes it too)."""
    mailboxes = selectors.sending_mailboxes(actor=actor)
    if form is None:
        initial = composer_initial(actor=actor, mailboxes=mailboxes, kind=kind, conversation=conversation, draft=draft)
        form = ComposeForm(initial=initial, mailboxes=mailboxes)
    slug = actor.organization.slug
    send_url = reverse("outbox:reply", args=[slug, conversation.pk]) if conversation is not None else reverse("outbox:new", args=[slug])
    return {
        "organization": actor.organization, "form": form, "kind": kind, "kind_label": OutgoingKind(kind).label,
        "conversation": conversation, "draft": draft, "has_mailbox": mailboxes.exists(), "send_url": send_url,
        "draft_attachments": list(enumerate((draft.content or {}).get("attachments", []))) if draft is not None else [],
        "next": _next_url(request) or "",
        # What the page checks before uploading chosen files (the server checks again).
        "max_upload_bytes": min(settings.POSTROOM_MAX_UPLOAD_BYTES, actions.MAX_ATTACHMENTS_BYTES),
    }  # fmt: skip


def _sent_response(request: HttpRequest, actor: Membership, conversation: Conversation | None, closed: bool) -> HttpResponse:
    slug = actor.organization.slug
    if closed:
        target = _next_url(request) or reverse("conversations:list", args=[slug])
    elif conversation is not None:
        target = reverse("conversations:detail", args=[slug, conversation.pk])
    else:
        target = reverse("outbox:list", args=[slug])
    if wants_partial(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


def _save_typed(request: HttpRequest, actor: Membership, kind: str, conversation: Conversation | None) -> Draft:
    """The plain-form "Save draft": what was typed, and the chosen files."""
    form = DraftForm({**request.POST.dict(), "kind": kind}, mailboxes=selectors.sending_mailboxes(actor=actor))
    if not form.is_valid():
        raise ValidationError(form.errors)
    data = form.cleaned_data
    return actions.draft_save(
        actor=actor, draft=_draft_from(request, actor, data), kind=kind, conversation=conversation, mailbox=data["mailbox"],
        typed=actions.Typed(to=data["to"], cc=data["cc"], bcc=data["bcc"], subject=data["subject"], text=data["text"]),
        attachments=_attachments(request, actor),
    )  # fmt: skip


def _compose(request: HttpRequest, actor: Membership, kind: str, conversation: Conversation | None) -> HttpResponse:
    mailboxes = selectors.sending_mailboxes(actor=actor)
    draft = _draft_from(request, actor)
    if draft is not None and draft.conversation_id != (conversation.pk if conversation is not None else None):
        return _compose_elsewhere(actor, draft)
    form = None
    status = 200
    if request.method == "POST":
        if request.POST.get("intent") == "save":
            try:
                _save_typed(request, actor, kind, conversation)
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
            else:
                messages.success(request, "Draft saved.")
            return HttpResponseRedirect(reverse("outbox:drafts", args=[actor.organization.slug]))
        form = ComposeForm(request.POST, mailboxes=mailboxes)
        if form.is_valid():
            data = form.cleaned_data
            try:
                attachments = [*(actions.draft_attachments(draft=draft) if draft is not None else []), *_attachments(request, actor)]
                actions.outgoing_create(
                    actor=actor, mailbox=data["mailbox"], kind=kind, conversation=conversation,
                    to=data["to"], cc=data["cc"], bcc=data["bcc"], subject=data["subject"], text=data["text"],
                    attachments=attachments, draft=draft, request=request,
                )  # fmt: skip
            except ValidationError as error:
                for field, field_messages in error.message_dict.items():
                    form.add_error(field if field in form.fields else None, field_messages)
            else:
                closed = bool(request.POST.get("close")) and conversation is not None
                if closed and conversation is not None:
                    conversation_actions.conversation_close(actor=actor, conversation=conversation, request=request)
                if not wants_partial(request):
                    messages.success(request, "Sent and closed." if closed else "Your message is queued for sending.")
                return _sent_response(request, actor, conversation, closed)
        status = 422 if wants_partial(request) else 200
    context = composer_context(request, actor, kind, conversation, draft, form)
    if wants_partial(request):
        return render(request, "outbox/_composer_form.html", context, status=status)
    return render(request, "outbox/compose.html", {**context, "nav": "outbox"}, status=status)


def _compose_elsewhere(actor: Membership, draft: Draft) -> HttpResponse:
    """A draft opened at the wrong address: go where it belongs."""
    return HttpResponseRedirect(reverse("outbox:draft", args=[actor.organization.slug, draft.pk]))


@login_required
@require_http_methods(["GET", "POST"])
def compose_new(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    return _compose(request, actor, OutgoingKind.NEW, None)


@login_required
@require_http_methods(["GET", "POST"])
def compose_reply(request: HttpRequest, slug: str, conversation_id: UUID) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    conversation = selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    kind = _kind(request, OutgoingKind.REPLY)
    if kind not in REPLY_KINDS:
        kind = OutgoingKind.REPLY
    return _compose(request, actor, kind, conversation)


# --- drafts -------------------------------------------------------------------------------------------------
@login_required
@require_POST
def draft_save(request: HttpRequest, slug: str) -> HttpResponse:
    """Save what the composer holds (the page calls it while the member types, and when files
    are chosen); answers the composer's save status, its draft id and its attachment list."""
    actor = membership_get(user=request.user, slug=slug)
    try:
        request.FILES  # noqa: B018 (parses the body: files over the limit are refused here, not as an error page)
    except RequestDataTooBig as error:
        # The page swaps this answer into the composer's status line.
        return render(request, "outbox/_draft_saved.html", {"error": str(error), "organization": actor.organization}, status=413)
    draft = _draft_from(request, actor)  # someone else's draft is a 404 before anything is read
    form = DraftForm(request.POST, mailboxes=selectors.sending_mailboxes(actor=actor))
    if not form.is_valid():
        text = " ".join(str(message) for field_messages in form.errors.values() for message in field_messages)
        return render(request, "outbox/_draft_saved.html", {"error": text, "organization": actor.organization}, status=422)
    data = form.cleaned_data
    conversation = None
    if draft is None and data.get("conversation"):
        conversation = selectors.conversation_get(actor=actor, conversation_id=data["conversation"])
    try:
        draft = actions.draft_save(
            actor=actor, draft=draft, kind=data["kind"], conversation=conversation, mailbox=data["mailbox"],
            typed=actions.Typed(to=data["to"], cc=data["cc"], bcc=data["bcc"], subject=data["subject"], text=data["text"]),
            attachments=_attachments(request, actor),
        )  # fmt: skip
    except (ValidationError, PermissionDenied) as error:
        text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        return render(request, "outbox/_draft_saved.html", {"error": text, "organization": actor.organization}, status=422)
    return render(request, "outbox/_draft_saved.html", {
        "organization": actor.organization, "draft": draft, "draft_attachments": list(enumerate((draft.content or {}).get("attachments", []))),
    })  # fmt: skip


@login_required
@require_POST
def draft_discard(request: HttpRequest, slug: str) -> HttpResponse:
    """Throw the composer's draft away (if it was saved) and go back where the member was."""
    actor = membership_get(user=request.user, slug=slug)
    draft = _draft_from(request, actor)
    if draft is not None:
        actions.draft_delete(actor=actor, draft=draft)
    target = _next_url(request) or reverse("outbox:drafts", args=[slug])
    if wants_partial(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    messages.success(request, "Draft discarded.")
    return HttpResponseRedirect(target)


@login_required
@require_GET
def draft_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    drafts = list(selectors.drafts_of(actor=actor).select_related("conversation", "mailbox")[:200])
    return render(request, "outbox/drafts.html", {
        "organization": actor.organization, "drafts": drafts, **nav_context(actor, "drafts"),
    })  # fmt: skip


@login_required
@require_GET
def draft_open(request: HttpRequest, slug: str, draft_id: str) -> HttpResponse:
    """A new message opens in the composer page; a reply in its conversation."""
    actor = membership_get(user=request.user, slug=slug)
    draft = selectors.draft_get(actor=actor, draft_id=draft_id)
    if draft.conversation_id is None:
        return HttpResponseRedirect(f"{reverse('outbox:new', args=[slug])}?draft={draft.pk}")
    return HttpResponseRedirect(f"{reverse('conversations:detail', args=[slug, draft.conversation_id])}?compose=draft#composer")


@login_required
@require_POST
def draft_delete(request: HttpRequest, slug: str, draft_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    draft = selectors.draft_get(actor=actor, draft_id=draft_id)
    actions.draft_delete(actor=actor, draft=draft)
    messages.success(request, "Draft deleted.")
    return HttpResponseRedirect(_next_url(request) or reverse("outbox:drafts", args=[slug]))


@login_required
@require_POST
def draft_detach(request: HttpRequest, slug: str, draft_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    draft = selectors.draft_get(actor=actor, draft_id=draft_id)
    try:
        index = int(request.POST.get("index", ""))
        draft = actions.draft_detach(actor=actor, draft=draft, index=index)
    except (ValueError, ValidationError):
        text = "That attachment is no longer on the draft."
        if wants_partial(request):
            return render(request, "outbox/_draft_saved.html", {"error": text, "organization": actor.organization}, status=422)
        messages.error(request, text)
        return HttpResponseRedirect(reverse("outbox:draft", args=[slug, draft.pk]))
    if wants_partial(request):
        return render(request, "outbox/_draft_saved.html", {
            "organization": actor.organization, "draft": draft, "draft_attachments": list(enumerate((draft.content or {}).get("attachments", []))),
        })  # fmt: skip
    return HttpResponseRedirect(reverse("outbox:draft", args=[slug, draft.pk]))


# --- the outbox ---------------------------------------------------------------------------------------------
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
