"""``conversation_comments``'s constant query against the ORM's ``_with_details``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.comments import actions, selectors
from postroom.comments.models import Comment
from postroom.comments.tests.conftest import Scene, mention, team_mention
from postroom.rules.actions import rule_create

pytestmark = pytest.mark.django_db


def _shown(comment: Comment) -> tuple[Any, ...]:
    author = comment.author
    return (
        [getattr(comment, field.attname) for field in Comment._meta.concrete_fields],
        comment.body,
        None if author is None else (author.pk, author.role, author.user.pk, author.user.email, author.user.display_name),
        None if comment.rule is None else (comment.rule.pk, comment.rule.name),
        [(attachment.pk, attachment.filename) for attachment in comment.attachments.all()],
        [(m.membership_id, m.membership.user.email if m.membership else None, m.team.name if m.team else None) for m in comment.mentions.all()],
    )


def test_the_thread_matches_the_orm(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    """Authors with their users, a rule's comment, a removed author's, a deleted comment,
    attachments and mentions: as the ORM reads them, and nothing read again when shown."""
    cast, conversation = scene.cast, scene.shared
    comment_as(cast.alice_membership, conversation, f"Over to you {mention(cast.bob_membership)}")
    comment_as(cast.bob_membership, conversation, "Notes attached",
               attachments=[actions.Upload(filename="notes.txt", content_type="text/plain", content=b"notes")])  # fmt: skip
    comment_as(cast.bob_membership, conversation, f"Cc {team_mention(scene.support)}")
    rule = rule_create(actor=cast.alice_membership, organization=False, name="Tagger", trigger="incoming", conditions=[],
                       actions=[{"kind": "close"}])  # fmt: skip
    actions.comment_by_rule(rule=rule, conversation=conversation, body="Closed by the tagger")
    gone = comment_as(cast.carol_membership, conversation, "Carol was here")
    Comment.objects.filter(pk=gone.pk).update(author=None)  # as when a removed member's comments stay
    deleted = comment_as(cast.alice_membership, conversation, "Oops")
    actions.comment_delete(actor=cast.alice_membership, comment=deleted)
    comment_as(cast.alice_membership, scene.private, "Elsewhere")

    expected = [_shown(comment) for comment in selectors._with_details(Comment.objects.filter(conversation=conversation)).order_by("created_at", "id")]
    for member in (cast.alice_membership, cast.bob_membership):
        found = selectors.conversation_comments(actor=member, conversation=conversation)
        with CaptureQueriesContext(connection) as captured:
            shown = [_shown(comment) for comment in found]
        assert not captured.captured_queries
        assert shown == expected
    assert len(expected) == 6
    assert [entry[3] is not None for entry in expected] == [False, False, False, True, False, False]
