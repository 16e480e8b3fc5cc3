"""Reads of comments, their attachments and mentions, scoped to the member asking.

A comment is visible exactly while its conversation is: a ``ConversationMember`` row of the
actor for that conversation (``conversations.access``). Missing, foreign and forbidden all
answer 404, as everywhere else. Mentionable people and teams come from the actor's own
organization only, so the autocomplete never lists (or confirms) anyone elsewhere.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, prefetch_related_objects
from django.http import Http404

from postroom.accounts.models import User
from postroom.comments.markdown import MENTION_MEMBER, MENTION_TEAM, MentionRef
from postroom.comments.models import Comment, CommentAttachment, CommentMention
from postroom.conversations import selectors as conversation_selectors
from postroom.conversations.models import Conversation, ConversationMember, Message, TimelineEvent
from postroom.core.rows import rows_joined
from postroom.orgs.models import Membership, Team
from postroom.rules.models import Rule


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


def _visible_to(actor: Membership, conversation_field: str = "conversation_id") -> Exists:
    return Exists(ConversationMember.objects.filter(conversation_id=OuterRef(conversation_field), membership=actor))


def comments_visible(*, actor: Membership) -> QuerySet[Comment]:
    return Comment.objects.filter(organization_id=actor.organization_id).filter(_visible_to(actor))


def _details() -> tuple[Prefetch[Any], ...]:
    return (
        Prefetch("attachments", queryset=CommentAttachment.objects.order_by("created_at", "id")),
        Prefetch("mentions", queryset=CommentMention.objects.select_related("membership__user", "team")),
    )


def _with_details(comments: QuerySet[Comment]) -> QuerySet[Comment]:
    return comments.select_related("author__user", "rule").prefetch_related(*_details())


def conversation_comments(*, actor: Membership, conversation: Conversation, row: ConversationMember | None = None) -> list[Comment]:
    """The thread, oldest first, with authors, attachments and mentions in a fixed number of queries.

    ``row``: the actor's ``ConversationMember`` row of this conversation, when the caller has just
    read it (``conversations.selectors.conversation_row_get``): that row is what makes the
    conversation visible, so it is not looked up again. Any other row, or none, and it is."""
    if row is None or (row.membership_id, row.conversation_id, row.organization_id) != (actor.pk, conversation.pk, actor.organization_id):
        conversation = conversation_selectors.conversation_get(actor=actor, conversation_id=conversation.pk)
    parameters = {"conversation": Conversation._meta.pk.get_db_prep_value(conversation.pk, connection)}
    comments = rows_joined(Comment, [("author", Membership), ("author.user", User), ("rule", Rule)], _THREAD_SQL, parameters)
    prefetch_related_objects(comments, *_details())
    return comments


# ``conversation_comments``'s comments with their authors (and their users) and rules, as
# ``_with_details`` reads them, in one constant text: every conversation page shows the thread
# (``test_the_thread_matches_the_orm``).
_THREAD_SQL = """
SELECT c.*, p.*, u.*, r.* FROM comments_comment c
LEFT JOIN orgs_membership p ON p.id = c.author_id
LEFT JOIN accounts_user u ON u.id = p.user_id
LEFT JOIN rules_rule r ON r.id = c.rule_id
WHERE c.conversation_id = %(conversation)s
ORDER BY c.created_at, c.id
"""


def comment_get(*, actor: Membership, comment_id: Any) -> Comment:
    """One comment of a conversation the actor sees (with what it shows), else 404."""
    comment = _with_details(comments_visible(actor=actor).filter(pk=_uuid(comment_id))).select_related("conversation").first()
    if comment is None:
        raise Http404
    return comment


def comment_attachment_get(*, actor: Membership, attachment_id: Any) -> CommentAttachment:
    attachment = (
        CommentAttachment.objects.filter(organization_id=actor.organization_id, pk=_uuid(attachment_id), comment__deleted_at__isnull=True)
        .filter(_visible_to(actor, "comment__conversation_id"))
        .select_related("comment")
        .first()
    )
    if attachment is None:
        raise Http404
    return attachment


def mention_names(comment: Comment) -> dict[MentionRef, str]:
    """Current names of what a comment mentions (its stored mentions, hence its organization only)."""
    names: dict[MentionRef, str] = {}
    for mention in comment.mentions.all():
        if mention.membership is not None:
            names[MentionRef(MENTION_MEMBER, mention.membership.pk)] = mention.membership.user.display_name
        elif mention.team is not None:
            names[MentionRef(MENTION_TEAM, mention.team.pk)] = mention.team.name
    return names


@dataclass(frozen=True)
class Mentionable:
    kind: str  # MENTION_MEMBER or MENTION_TEAM
    id: int
    name: str
    detail: str  # a member's email, a team's size

    @property
    def token(self) -> str:
        """What the composer inserts for it (see ``comments.markdown``)."""
        label = self.name.replace("[", "(").replace("]", ")").replace("\n", " ")[:100]
        return f"@[{label}]({self.kind}:{self.id})"


def mentionables(*, actor: Membership, prefix: str, limit: int = 8) -> list[Mentionable]:
    """Members (active accounts) and teams of the actor's organization whose name, or a word of
    it, or whose email starts with ``prefix``."""
    prefix = " ".join(prefix.split())[:60]
    members = Membership.objects.filter(organization_id=actor.organization_id, user__is_active=True).select_related("user")
    teams = Team.objects.filter(organization_id=actor.organization_id)
    if prefix:
        members = members.filter(
            Q(user__name__istartswith=prefix) | Q(user__name__icontains=f" {prefix}") | Q(user__email__istartswith=prefix)
        )
        teams = teams.filter(Q(name__istartswith=prefix) | Q(name__icontains=f" {prefix}"))
    found = [
        Mentionable(MENTION_MEMBER, member.pk, member.user.display_name, member.user.email)
        for member in members.order_by("user__name", "user__email")[:limit]
    ]
    found += [Mentionable(MENTION_TEAM, team.pk, team.name, "team") for team in teams.order_by("name")[:limit]]
    return found


def memberships_by_ids(*, actor: Membership, ids: list[int]) -> dict[int, Membership]:
    """Memberships of the actor's organization among ``ids``; other ids (another organization's,
    or none at all) are simply absent."""
    return {
        membership.pk: membership
        for membership in Membership.objects.filter(organization_id=actor.organization_id, pk__in=ids).select_related("user")
    }


def teams_by_ids(*, actor: Membership, ids: list[int]) -> dict[int, Team]:
    return {team.pk: team for team in Team.objects.filter(organization_id=actor.organization_id, pk__in=ids)}


# The conversation page's thread ------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    """One item of a conversation's thread: ``kind`` is "message", "comment" or "event"."""

    kind: str
    at: datetime
    item: Message | Comment | TimelineEvent


def conversation_feed(*, actor: Membership, conversation: Conversation, messages: list[Message] | None = None) -> list[FeedEntry]:
    """Messages, comments and timeline events of a conversation in time order, for a page that
    interleaves them. ``messages`` may be passed when the page has them already."""
    if messages is None:
        messages = list(conversation_selectors.conversation_messages(actor=actor, conversation=conversation))
    entries = [FeedEntry("message", message.sent_at or message.created_at, message) for message in messages]
    entries += [
        FeedEntry("comment", comment.created_at, comment) for comment in conversation_comments(actor=actor, conversation=conversation)
    ]
    entries += [
        FeedEntry("event", event.created_at, event) for event in conversation_selectors.conversation_timeline(conversation=conversation)
    ]
    order = {"message": 0, "event": 1, "comment": 2}
    return sorted(entries, key=lambda entry: (entry.at, order[entry.kind]))
