"""API for comments and the mention autocomplete.

Same rules as the pages (``comments.actions``): a conversation or comment the caller cannot see
is 404; changing someone else's comment is 403. Bodies are markdown as written (mentions as
``@[Name](member:ID)`` or ``@[Team](team:ID)``, the ``mention`` the mentionables endpoint
returns); answers carry both the text and ``html``, the rendered and sanitised form.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, File, Query, Router, Schema, Status, UploadedFile
from pydantic import ConfigDict

from postroom.api.errors import ERRORS
from postroom.comments import actions, selectors
from postroom.comments.display import shown
from postroom.comments.models import Comment, CommentAttachment
from postroom.conversations import selectors as conversation_selectors
from postroom.orgs.models import Membership
from postroom.orgs.selectors import membership_get

router = Router(tags=["comments"])


class Input(Schema):
    # Unknown fields (author, conversation, organization, timestamps…) are dropped, never written (R23).
    model_config = ConfigDict(extra="ignore")


class CommentAttachmentOut(Schema):
    id: str
    filename: str
    content_type: str
    size: int
    download_url: str


class MentionOut(Schema):
    kind: str = Field(description='"member" or "team"')
    id: int
    name: str


class CommentOut(Schema):
    id: str
    conversation_id: str
    author_id: int | None = Field(description="The author's membership id; null once they left the organization.")
    author_name: str
    body: str | None = Field(description="The markdown as written; null once deleted.")
    html: str | None = Field(description="The body rendered and sanitised; null once deleted.")
    mentions: list[MentionOut]
    attachments: list[CommentAttachmentOut]
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None


class CommentIn(Input):
    body: str = Field(min_length=1, max_length=actions.MAX_BODY_LENGTH)


class MentionableOut(Schema):
    kind: str = Field(description='"member" or "team"')
    id: int
    name: str
    detail: str = Field(description='A member\'s email address; "team" for a team.')
    mention: str = Field(description="What to put in a comment's body to mention it.")


class MentionableQuery(Schema):
    q: str = Field("", max_length=60, description="A prefix of a name, of a word of it, or of an email address.")


def _attachment_out(actor: Membership, attachment: CommentAttachment) -> CommentAttachmentOut:
    return CommentAttachmentOut(
        id=str(attachment.pk),
        filename=attachment.filename or "",
        content_type=attachment.content_type,
        size=attachment.size,
        download_url=reverse("comments:attachment", args=[actor.organization.slug, attachment.pk]),
    )


def _comment_out(actor: Membership, comment: Comment) -> CommentOut:
    entry = shown(actor, comment)
    mentions = []
    if entry.html is not None:
        for mention in comment.mentions.all():
            if mention.membership is not None:
                mentions.append(MentionOut(kind="member", id=mention.membership.pk, name=mention.membership.user.display_name))
            elif mention.team is not None:
                mentions.append(MentionOut(kind="team", id=mention.team.pk, name=mention.team.name))
    return CommentOut(
        id=str(comment.pk),
        conversation_id=str(comment.conversation_id),
        author_id=comment.author_id,
        author_name=entry.author_name,
        body=comment.body if entry.html is not None else None,
        html=str(entry.html) if entry.html is not None else None,
        mentions=mentions,
        attachments=[_attachment_out(actor, attachment) for attachment in entry.attachments],
        created_at=comment.created_at,
        edited_at=comment.edited_at,
        deleted_at=comment.deleted_at,
    )


def _fresh(actor: Membership, comment: Comment) -> Comment:
    """The comment as it is now, with what it shows loaded."""
    return selectors.comment_get(actor=actor, comment_id=comment.pk)


@router.get(
    "/orgs/{slug}/conversations/{conversation_id}/comments",
    response={200: list[CommentOut], **ERRORS},
    summary="The comments of a conversation, oldest first",
    url_name="comment_list",
)
def comment_list(request: HttpRequest, slug: str, conversation_id: str) -> list[CommentOut]:
    actor = membership_get(user=request.user, slug=slug)
    conversation = conversation_selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    return [_comment_out(actor, comment) for comment in selectors.conversation_comments(actor=actor, conversation=conversation)]


@router.post(
    "/orgs/{slug}/conversations/{conversation_id}/comments",
    response={201: CommentOut, **ERRORS},
    summary="Comment on a conversation (mentions share it and notify)",
    url_name="comment_create",
)
def comment_create(request: HttpRequest, slug: str, conversation_id: str, payload: CommentIn) -> Status[CommentOut]:
    actor = membership_get(user=request.user, slug=slug)
    conversation = conversation_selectors.conversation_get(actor=actor, conversation_id=conversation_id)
    comment = actions.comment_create(actor=actor, conversation=conversation, body=payload.body, request=request)
    return Status(201, _comment_out(actor, _fresh(actor, comment)))


@router.get("/orgs/{slug}/comments/{comment_id}", response={200: CommentOut, **ERRORS}, summary="One comment", url_name="comment_detail")
def comment_detail(request: HttpRequest, slug: str, comment_id: str) -> CommentOut:
    actor = membership_get(user=request.user, slug=slug)
    return _comment_out(actor, selectors.comment_get(actor=actor, comment_id=comment_id))


@router.patch(
    "/orgs/{slug}/comments/{comment_id}", response={200: CommentOut, **ERRORS}, summary="Edit your comment", url_name="comment_update"
)
def comment_update(request: HttpRequest, slug: str, comment_id: str, payload: CommentIn) -> CommentOut:
    actor = membership_get(user=request.user, slug=slug)
    comment = selectors.comment_get(actor=actor, comment_id=comment_id)
    comment = actions.comment_edit(actor=actor, comment=comment, body=payload.body, request=request)
    return _comment_out(actor, _fresh(actor, comment))


@router.delete(
    "/orgs/{slug}/comments/{comment_id}", response={204: None, **ERRORS}, summary="Delete your comment", url_name="comment_delete"
)
def comment_delete(request: HttpRequest, slug: str, comment_id: str) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    comment = selectors.comment_get(actor=actor, comment_id=comment_id)
    actions.comment_delete(actor=actor, comment=comment, request=request)
    return Status(204, None)


@router.post(
    "/orgs/{slug}/comments/{comment_id}/attachments",
    response={201: CommentOut, **ERRORS},
    summary="Attach files to your comment (multipart, field name: files)",
    url_name="comment_attachments_add",
)
def comment_attachments_add(
    request: HttpRequest, slug: str, comment_id: str, files: File[list[UploadedFile] | None] = None
) -> Status[CommentOut]:
    # ``files`` is optional in the schema so that access is decided (404) before the input (422).
    actor = membership_get(user=request.user, slug=slug)
    comment = selectors.comment_get(actor=actor, comment_id=comment_id)
    if not files:
        raise ValidationError({"files": ["Attach at least one file (multipart field: files)."]})
    uploads = [
        actions.Upload(filename=upload.name or "attachment", content_type=upload.content_type or "", content=upload.read())
        for upload in files[: actions.MAX_ATTACHMENTS + 1]
    ]
    actions.comment_attachments_add(actor=actor, comment=comment, attachments=uploads)
    return Status(201, _comment_out(actor, _fresh(actor, comment)))


@router.get(
    "/orgs/{slug}/mentionables",
    response={200: list[MentionableOut], **ERRORS},
    summary="Members and teams of the organization to mention, by prefix",
    url_name="comment_mentionables",
)
def mentionables(request: HttpRequest, slug: str, query: Query[MentionableQuery]) -> list[MentionableOut]:
    actor = membership_get(user=request.user, slug=slug)
    return [
        MentionableOut(kind=item.kind, id=item.id, name=item.name, detail=item.detail, mention=item.token)
        for item in selectors.mentionables(actor=actor, prefix=query.q)
    ]
