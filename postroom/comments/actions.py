"""Writing comments: create, edit and delete your own, attachments, mentions.

Rules (tested in ``comments/tests``):
- Anyone who can see a conversation may comment on it and read its comments; a conversation
  they cannot see is a 404, whatever the comment id. Only a comment's author may edit or delete
  it or add attachments to it: anyone else gets 403 (they can see it, so it is no secret).
- Deleting keeps the comment's place in the thread ("comment deleted") and drops its content:
  the sealed text becomes NULL, attachments and mentions are removed.
- Mentions (``@[Name](member:ID)`` / ``@[Team](team:ID)``, see ``comments.markdown``) resolve
  inside the author's organization only; an id of another organization, or of nobody, stays
  plain text and notifies no one. A mentioned member who does not see the conversation through
  a share gets it shared with them (``conversation_share(member=…)``, audited), as assigning
  does; a mentioned team gets it shared with the team (into its inbox, as in Missive) and its
  active members are notified, never its observers. The mentioned members get
  ``mentioned_at`` (the Mentions view) and follow the conversation; the author follows too.
  Editing a comment notifies only the mentions it adds.
- Comments never leave Postroom: nothing here builds mail, and the outbox reads messages only
  (tested with a canary through the SMTP peer).

Attachment contents are stored as encrypted blobs before the transaction (slow I/O stays out of
it; an orphan blob after a rollback is harmless), names are sealed. Audit events carry ids and
counts only, never text or file names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.comments import selectors
from postroom.comments.markdown import MENTION_MEMBER, MENTION_TEAM, MentionRef, mentions_in
from postroom.comments.models import Comment, CommentAttachment, CommentMention
from postroom.conversations import actions as conversation_actions
from postroom.conversations import selectors as conversation_selectors
from postroom.conversations.models import Conversation, ConversationMember
from postroom.conversations.signals import conversation_event
from postroom.core.blobs import blob_put
from postroom.core.keys import org_scope
from postroom.mime.filenames import safe_filename
from postroom.notifications import actions as notification_actions
from postroom.orgs.models import Membership

MAX_BODY_LENGTH = 20_000
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_TOTAL_ATTACHMENT_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    content: bytes


def _clean_body(body: str, *, allow_empty: bool) -> str:
    text = (body or "").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()
    if not text and not allow_empty:
        raise ValidationError({"body": ["Write something (or attach a file)."]})
    if len(text) > MAX_BODY_LENGTH:
        raise ValidationError({"body": [f"A comment has at most {MAX_BODY_LENGTH:,} characters."]})
    return text


def _check_uploads(uploads: Sequence[Upload], *, already: int = 0, already_bytes: int = 0) -> None:
    if len(uploads) + already > MAX_ATTACHMENTS:
        raise ValidationError({"attachments": [f"A comment has at most {MAX_ATTACHMENTS} attachments."]})
    for upload in uploads:
        if len(upload.content) > MAX_ATTACHMENT_BYTES:
            raise ValidationError({"attachments": [f"Each attachment may be at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB."]})
    if sum(len(upload.content) for upload in uploads) + already_bytes > MAX_TOTAL_ATTACHMENT_BYTES:
        raise ValidationError(
            {"attachments": [f"A comment's attachments may total at most {MAX_TOTAL_ATTACHMENT_BYTES // (1024 * 1024)} MB."]}
        )


def _content_type(value: str) -> str:
    bare = (value or "").split(";")[0].strip().lower()
    if not bare or len(bare) > 127 or "/" not in bare or any(ord(character) < 0x21 for character in bare):
        return "application/octet-stream"
    return bare


def _store_blobs(actor: Membership, uploads: Sequence[Upload]) -> list[tuple[Upload, str]]:
    scope = org_scope(actor.organization_id)
    return [(upload, blob_put(scope, upload.content)) for upload in uploads]


def _attach(comment: Comment, stored: list[tuple[Upload, str]]) -> None:
    for upload, blob in stored:
        content_type = _content_type(upload.content_type)
        attachment = CommentAttachment(
            organization_id=comment.organization_id, comment=comment, content_type=content_type, size=len(upload.content), blob=blob
        )
        attachment.filename = safe_filename(upload.filename, content_type)
        attachment.save()


def _publish(conversation: Conversation, kind: str, actor: Membership, **details: Any) -> None:
    conversation_id, organization_id, actor_id = conversation.pk, conversation.organization_id, actor.pk
    transaction.on_commit(
        lambda: conversation_event.send(
            sender=Conversation, conversation_id=conversation_id, organization_id=organization_id, kind=kind, actor_id=actor_id,
            details=details,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class _Resolved:
    members: dict[int, Membership]
    teams: dict[int, Any]

    @property
    def refs(self) -> set[MentionRef]:
        return {MentionRef(MENTION_MEMBER, pk) for pk in self.members} | {MentionRef(MENTION_TEAM, pk) for pk in self.teams}


def _resolve(actor: Membership, body: str) -> _Resolved:
    refs = mentions_in(body)
    member_ids = [ref.id for ref in refs if ref.kind == MENTION_MEMBER]
    team_ids = [ref.id for ref in refs if ref.kind == MENTION_TEAM]
    return _Resolved(
        members=selectors.memberships_by_ids(actor=actor, ids=member_ids) if member_ids else {},
        teams=selectors.teams_by_ids(actor=actor, ids=team_ids) if team_ids else {},
    )


def _store_mentions(comment: Comment, resolved: _Resolved) -> None:
    CommentMention.objects.filter(comment=comment).delete()
    CommentMention.objects.bulk_create(
        [CommentMention(comment=comment, membership=member) for member in resolved.members.values()]
        + [CommentMention(comment=comment, team=team) for team in resolved.teams.values()]
    )


def _apply_mentions(
    actor: Membership, conversation: Conversation, resolved: _Resolved, new: set[MentionRef], request: HttpRequest | None
) -> set[int]:
    """Share with the newly mentioned who lack a share, mark them mentioned and following; the
    membership ids to notify of the mention."""
    members = [member for pk, member in resolved.members.items() if MentionRef(MENTION_MEMBER, pk) in new]
    teams = [team for pk, team in resolved.teams.items() if MentionRef(MENTION_TEAM, pk) in new]
    for member in members:
        if member.pk == actor.pk:
            continue
        if not ConversationMember.objects.filter(conversation=conversation, membership=member, via_share=True).exists():
            conversation_actions.conversation_share(actor=actor, conversation=conversation, member=member, request=request)
    for team in teams:
        conversation_actions.conversation_share(actor=actor, conversation=conversation, team=team, request=request)
    mentioned = {member.pk for member in members} | notification_actions.team_active_members(team.pk for team in teams)
    mentioned.discard(actor.pk)
    ConversationMember.objects.filter(conversation=conversation, membership_id__in=mentioned).update(
        mentioned_at=timezone.now(), following=True
    )
    return mentioned


def comment_create(
    *, actor: Membership, conversation: Conversation, body: str, attachments: Sequence[Upload] = (), request: HttpRequest | None = None
) -> Comment:
    """Comment on a conversation the actor can see (404 otherwise)."""
    conversation = conversation_selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    text = _clean_body(body, allow_empty=bool(attachments))
    _check_uploads(attachments)
    resolved = _resolve(actor, text)
    stored = _store_blobs(actor, attachments)
    with transaction.atomic():
        comment = Comment(organization_id=actor.organization_id, conversation=conversation, author=actor)
        comment.body = text
        comment.save()
        _attach(comment, stored)
        _store_mentions(comment, resolved)
        mentioned = _apply_mentions(actor, conversation, resolved, resolved.refs, request)
        ConversationMember.objects.filter(conversation=conversation, membership=actor).update(following=True)
        notification_actions.notify_comment(
            conversation=conversation, comment_id=comment.pk, author_id=actor.pk, mentioned=mentioned, new=True
        )
        _publish(conversation, "commented", actor, comment_id=str(comment.pk))
    return comment


def comment_by_rule(*, rule: Any, conversation: Conversation, body: str) -> Comment:
    """A rule's "add a comment" action (``postroom.rules.engine``, inside the rule's savepoint,
    after the rule's authorisation was checked again). The comment has the rule, not a member,
    as its author, and nobody may edit it.

    No side effects beyond the comment and a live update: mention tokens are not resolved (a
    rule runs on every matching message: it must not share conversations with, or notify,
    whoever its text names, each time), and followers are not notified (the rule's timeline
    entry already says what it did, and a notification per incoming message would be noise)."""
    text = _clean_body(body, allow_empty=False)
    comment = Comment(organization_id=conversation.organization_id, conversation=conversation, author=None, rule=rule)
    comment.body = text
    comment.save()
    conversation_id, organization_id = conversation.pk, conversation.organization_id
    transaction.on_commit(
        lambda: conversation_event.send(
            sender=Conversation, conversation_id=conversation_id, organization_id=organization_id, kind="commented", actor_id=None,
            details={"comment_id": str(comment.pk), "rule_id": str(rule.pk)},
        )
    )  # fmt: skip
    return comment


def _own(actor: Membership, comment: Comment, *, deleted_ok: bool = False) -> Comment:
    comment = selectors.comment_get(actor=actor, comment_id=comment.pk)  # 404 unless the actor sees the conversation
    if comment.author_id != actor.pk:
        raise PermissionDenied("You can change only your own comments.")
    if comment.deleted_at is not None and not deleted_ok:
        raise ValidationError("This comment was deleted.")
    return comment


def comment_edit(*, actor: Membership, comment: Comment, body: str, request: HttpRequest | None = None) -> Comment:
    comment = _own(actor, comment)
    text = _clean_body(body, allow_empty=comment.attachments.exists())
    resolved = _resolve(actor, text)
    with transaction.atomic():
        before = {
            MentionRef(MENTION_MEMBER, membership_id) if membership_id else MentionRef(MENTION_TEAM, team_id)
            for membership_id, team_id in CommentMention.objects.filter(comment=comment).values_list("membership_id", "team_id")
        }
        comment.body = text
        comment.edited_at = timezone.now()
        comment.save(update_fields=["body_sealed", "edited_at"])
        _store_mentions(comment, resolved)
        mentioned = _apply_mentions(actor, comment.conversation, resolved, resolved.refs - before, request)
        notification_actions.notify_comment(
            conversation=comment.conversation, comment_id=comment.pk, author_id=actor.pk, mentioned=mentioned, new=False
        )
        _publish(comment.conversation, "comment_edited", actor, comment_id=str(comment.pk))
    return comment


def comment_delete(*, actor: Membership, comment: Comment, request: HttpRequest | None = None) -> Comment:
    """Delete one's own comment (deleting it again changes nothing)."""
    comment = _own(actor, comment, deleted_ok=True)
    if comment.deleted_at is not None:
        return comment
    with transaction.atomic():
        attachments = CommentAttachment.objects.filter(comment=comment).delete()[0]
        CommentMention.objects.filter(comment=comment).delete()
        comment.body = None
        comment.deleted_at = timezone.now()
        comment.save(update_fields=["body_sealed", "deleted_at"])
        audit_record(
            action="comment.deleted", actor=actor.user, organization=actor.organization, request=request, target=comment,
            details={"conversation_id": str(comment.conversation_id), "attachments": attachments},
        )  # fmt: skip
        _publish(comment.conversation, "comment_deleted", actor, comment_id=str(comment.pk))
    return comment


def comment_attachments_add(*, actor: Membership, comment: Comment, attachments: Sequence[Upload]) -> list[CommentAttachment]:
    """Attach files to one's own comment."""
    comment = _own(actor, comment)
    existing = list(comment.attachments.values_list("size", flat=True))
    _check_uploads(attachments, already=len(existing), already_bytes=sum(existing))
    stored = _store_blobs(actor, attachments)
    with transaction.atomic():
        _attach(comment, stored)
        _publish(comment.conversation, "comment_edited", actor, comment_id=str(comment.pk))
    return list(comment.attachments.order_by("-created_at", "-id")[: len(attachments)])[::-1]


def comment_attachment_download_record(*, actor: Membership, attachment: CommentAttachment, request: HttpRequest) -> None:
    audit_record(
        action="comment.attachment_downloaded", actor=actor.user, organization=actor.organization, request=request,
        target=attachment, details={"comment_id": str(attachment.comment_id), "size": attachment.size},
    )  # fmt: skip
