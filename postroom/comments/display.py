"""What the comment templates need: each comment rendered (markdown → sanitised HTML, mentions
under their current names) with what the viewer may do to it. Shared by the views, the template
tags and any page that shows comments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.safestring import SafeString

from postroom.comments import selectors
from postroom.comments.markdown import comment_html
from postroom.comments.models import Comment, CommentAttachment
from postroom.conversations.models import Conversation, ConversationMember
from postroom.orgs.models import Membership


@dataclass
class ShownComment:
    comment: Comment
    html: SafeString | None  # None once deleted
    own: bool
    author_name: str
    attachments: list[CommentAttachment] = field(default_factory=list)

    @property
    def pk(self) -> Any:
        return self.comment.pk


def _rule_author(comment: Comment) -> str:
    if comment.rule_id is not None:
        return f"Rule {comment.rule.name}" if comment.rule is not None else "A rule"
    return "Former member"


def shown(actor: Membership, comment: Comment) -> ShownComment:
    deleted = comment.deleted_at is not None
    author = comment.author
    return ShownComment(
        comment=comment,
        html=None if deleted else comment_html(comment.body or "", selectors.mention_names(comment)),
        own=author is not None and author.pk == actor.pk,
        author_name=author.user.display_name if author is not None else _rule_author(comment),
        attachments=[] if deleted else list(comment.attachments.all()),
    )


def comment_context(actor: Membership, comment: Comment) -> dict[str, Any]:
    return {"entry": shown(actor, comment), "organization": actor.organization, "conversation_id": comment.conversation_id}


def composer_context(request: HttpRequest, actor: Membership, conversation: Conversation, **extra: Any) -> dict[str, Any]:
    slug = actor.organization.slug
    return {
        "request": request,
        "organization": actor.organization,
        "conversation": conversation,
        "action": reverse("comments:thread", args=[slug, conversation.pk]),
        "mentions_url": reverse("api:comment_mentionables", kwargs={"slug": slug}),
        "draft": "",
        "errors": [],
        **extra,
    }


def thread_context(
    request: HttpRequest, actor: Membership, conversation: Conversation, row: ConversationMember | None = None, **extra: Any
) -> dict[str, Any]:
    """``row``: the actor's row of the conversation, when the caller has it (``conversation_comments``)."""
    entries = [shown(actor, comment) for comment in selectors.conversation_comments(actor=actor, conversation=conversation, row=row)]
    return {**composer_context(request, actor, conversation, **extra), "entries": entries, "conversation_id": conversation.pk}
