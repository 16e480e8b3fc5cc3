"""Comment pages and partials. Shape of every view: parse → access (selectors) → action → render.

htmx requests get the partial they replace (the thread, or one comment); others are redirected
back to the conversation, at the comment. Input that cannot be saved is shown again with its
error, nothing typed is lost. Attachments are downloads only, like mail attachments
(``Content-Disposition: attachment``, an allowlisted served type, ``nosniff``, ``CSP: sandbox``),
access-checked and audited.
"""

from __future__ import annotations

from typing import Any

from csp.decorators import csp_exempt
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from postroom.comments import actions, selectors
from postroom.comments.display import comment_context, thread_context
from postroom.comments.models import Comment
from postroom.conversations import selectors as conversation_selectors
from postroom.conversations.models import Conversation
from postroom.conversations.views import DOWNLOAD_POLICY
from postroom.core.blobs import blob_get
from postroom.mime.filenames import content_disposition, served_content_type
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_get


def _htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _uploads(request: HttpRequest) -> list[actions.Upload]:
    files = request.FILES.getlist("attachments")[: actions.MAX_ATTACHMENTS + 1]
    return [
        actions.Upload(filename=upload.name or "attachment", content_type=upload.content_type or "", content=upload.read())
        for upload in files
    ]


def _errors(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [message for messages in error.message_dict.values() for message in messages]
    return list(error.messages)


def _at_comment(actor: Membership, conversation_id: Any, comment: Comment | None = None) -> HttpResponseRedirect:
    url = reverse("conversations:detail", args=[actor.organization.slug, conversation_id])
    return HttpResponseRedirect(f"{url}#comment-{comment.pk}" if comment is not None else f"{url}#comments")


def _thread(request: HttpRequest, actor: Membership, conversation: Conversation, **extra: Any) -> HttpResponse:
    return render(request, "comments/_thread.html", {**thread_context(request, actor, conversation), **extra})


@login_required
@require_http_methods(["GET", "POST"])
def thread(request: HttpRequest, slug: str, conversation_id: str) -> HttpResponse:
    """GET: the thread partial (for htmx and live updates). POST: add a comment."""
    actor = membership_get(user=request.user, slug=slug)
    conversation = conversation_selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    if request.method == "GET":
        return _thread(request, actor, conversation)
    body = request.POST.get("body", "")
    try:
        comment = actions.comment_create(actor=actor, conversation=conversation, body=body, attachments=_uploads(request), request=request)
    except ValidationError as error:
        if _htmx(request):
            return _thread(request, actor, conversation, draft=body, errors=_errors(error))
        return render(request, "comments/retry.html", {
            "organization": actor.organization, "conversation": conversation, "draft": body, "errors": _errors(error),
            "action": reverse("comments:thread", args=[slug, conversation.pk]), "nav": "conversations",
        }, status=422)  # fmt: skip
    if _htmx(request):
        return _thread(request, actor, conversation)
    return _at_comment(actor, conversation.pk, comment)


def _one(request: HttpRequest, actor: Membership, comment: Comment, **extra: Any) -> HttpResponse:
    comment = selectors.comment_get(actor=actor, comment_id=comment.pk)
    return render(request, "comments/_comment.html", {**comment_context(actor, comment), **extra})


@login_required
@require_POST
def comment_edit(request: HttpRequest, slug: str, comment_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    comment = selectors.comment_get(actor=actor, comment_id=comment_id)
    body = request.POST.get("body", "")
    try:
        comment = actions.comment_edit(actor=actor, comment=comment, body=body, request=request)
    except ValidationError as error:
        if _htmx(request):
            return _one(request, actor, comment, edit_draft=body, edit_errors=_errors(error), editing=True)
        return render(request, "comments/retry.html", {
            "organization": actor.organization, "conversation": comment.conversation, "draft": body, "errors": _errors(error),
            "action": reverse("comments:edit", args=[slug, comment.pk]), "editing": True, "nav": "conversations",
        }, status=422)  # fmt: skip
    if _htmx(request):
        return _one(request, actor, comment)
    return _at_comment(actor, comment.conversation_id, comment)


@login_required
@require_POST
def comment_delete(request: HttpRequest, slug: str, comment_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    comment = selectors.comment_get(actor=actor, comment_id=comment_id)
    comment = actions.comment_delete(actor=actor, comment=comment, request=request)
    if _htmx(request):
        return _one(request, actor, comment)
    return _at_comment(actor, comment.conversation_id, comment)


@login_required
@require_GET
@csp_exempt()  # type: ignore[arg-type]  # django-csp types views as taking only the request
def attachment_download(request: HttpRequest, slug: str, comment_attachment_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    attachment = selectors.comment_attachment_get(actor=actor, attachment_id=comment_attachment_id)
    content = blob_get(attachment.key_scope(), attachment.blob)
    actions.comment_attachment_download_record(actor=actor, attachment=attachment, request=request)
    response = HttpResponse(content, content_type=served_content_type(attachment.content_type))
    response["Content-Disposition"] = content_disposition(attachment.filename or "")
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    return response
