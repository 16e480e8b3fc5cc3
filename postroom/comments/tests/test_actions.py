"""Comment actions: who may comment, edit and delete; mentions share, follow and notify inside
the organization only (SECURITY.md R21, R40); content is sealed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import cast as cast_to

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.dispatch import receiver
from django.http import Http404

from postroom.audit.models import AuditEvent
from postroom.comments import actions, selectors
from postroom.comments.display import shown
from postroom.comments.models import Comment, CommentAttachment, CommentMention
from postroom.comments.tests.conftest import Scene, mention, team_mention
from postroom.conversations.models import ConversationMember, ConversationShare
from postroom.conversations.signals import conversation_event
from postroom.notifications.models import Notification, NotificationKind
from postroom.orgs.models import Team

pytestmark = pytest.mark.django_db

CANARY = "canary-7f3e-comment"


def row(scene: Scene, member: Any, conversation: Any = None) -> ConversationMember | None:
    return ConversationMember.objects.filter(conversation=conversation or scene.shared, membership=member).first()


def notifications_of(member: Any) -> list[tuple[str, int]]:
    return list(Notification.objects.filter(recipient=member).order_by("created_at").values_list("kind", "count"))


def test_a_comment_is_sealed_at_rest_and_reads_back(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    comment = comment_as(scene.cast.alice_membership, scene.shared, f"Refund approved {CANARY}")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT body_sealed FROM comments_comment WHERE id = %s", [comment.pk.hex if connection.vendor == "sqlite" else comment.pk]
        )
        (stored,) = cursor.fetchone()
    assert CANARY.encode() not in bytes(stored)
    assert Comment.objects.get(pk=comment.pk).body == f"Refund approved {CANARY}"


def test_whoever_sees_the_conversation_comments_and_others_get_404(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    comment_as(cast.bob_membership, scene.shared, "I'll take it")
    comment_as(cast.carol_membership, scene.shared, "Observer note")  # observers see the team's conversations
    with pytest.raises(Http404):
        comment_as(cast.bob_membership, scene.private, "sneaky")
    with pytest.raises(Http404):
        comment_as(cast.charlie_membership, scene.shared, "outsider")
    assert Comment.objects.filter(conversation=scene.private).count() == 0
    with pytest.raises(Http404):
        selectors.conversation_comments(actor=cast.charlie_membership, conversation=scene.shared)


def test_the_thread_trusts_only_the_actors_own_row_of_that_conversation(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    """A page that has the actor's row of the conversation saves the access query; a row of
    someone else or of another conversation does not open a thread the actor cannot see."""
    from django.test.utils import CaptureQueriesContext

    cast = scene.cast
    comment_as(cast.alice_membership, scene.private, "Mine alone")
    comment_as(cast.bob_membership, scene.shared, "Team note")
    bobs = row(scene, cast.bob_membership)
    alices_private = row(scene, cast.alice_membership, scene.private)
    assert bobs is not None
    assert alices_private is not None
    with CaptureQueriesContext(connection) as checked:
        selectors.conversation_comments(actor=cast.bob_membership, conversation=scene.shared)
    with CaptureQueriesContext(connection) as trusted:
        found = selectors.conversation_comments(actor=cast.bob_membership, conversation=scene.shared, row=bobs)
    assert [comment.body for comment in found] == ["Team note"]
    assert len(trusted) == len(checked) - 1
    with pytest.raises(Http404):  # Alice's row of her private conversation is not Bob's
        selectors.conversation_comments(actor=cast.bob_membership, conversation=scene.private, row=alices_private)
    with pytest.raises(Http404):  # Bob's row of another conversation
        selectors.conversation_comments(actor=cast.bob_membership, conversation=scene.private, row=bobs)
    with pytest.raises(Http404):
        selectors.conversation_comments(actor=cast.charlie_membership, conversation=scene.shared, row=bobs)


def test_the_commenter_follows_the_conversation(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    comment_as(scene.cast.bob_membership, scene.shared, "Following this")
    assert row(scene, scene.cast.bob_membership).following  # type: ignore[union-attr]


def test_empty_and_oversized_comments_are_refused_with_a_reason(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    with pytest.raises(ValidationError, match="Write something"):
        comment_as(scene.cast.alice_membership, scene.shared, "   \n ")
    with pytest.raises(ValidationError, match="at most 20,000"):
        comment_as(scene.cast.alice_membership, scene.shared, "x" * 20_001)
    assert not Comment.objects.exists()


def test_mentioning_someone_who_cannot_see_it_shares_it_with_them(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    assert row(scene, cast.bob_membership, scene.private) is None
    comment_as(cast.alice_membership, scene.private, f"{mention(cast.bob_membership)} can you check?")
    bob_row = row(scene, cast.bob_membership, scene.private)
    assert bob_row is not None
    assert bob_row.via_share
    assert bob_row.following
    assert bob_row.mentioned_at is not None
    assert ConversationShare.objects.filter(conversation=scene.private, membership=cast.bob_membership).exists()
    assert AuditEvent.objects.filter(action="conversation.shared", target_id=str(scene.private.pk)).count() == 1
    assert notifications_of(cast.bob_membership) == [(NotificationKind.MENTION, 1)]
    assert notifications_of(cast.alice_membership) == []  # never about one's own comment
    # Bob now reads the thread, and the mention under his current name.
    [comment] = selectors.conversation_comments(actor=cast.bob_membership, conversation=scene.private)
    assert '<span class="mention">@Bob Member</span>' in str(shown(cast.bob_membership, comment).html)


def test_mentioning_a_team_shares_with_it_and_notifies_active_members_only(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    """Sales: Carol active, Bob an observer."""
    cast = scene.cast
    comment_as(cast.alice_membership, scene.private, f"{team_mention(scene.sales)} please quote")
    assert ConversationShare.objects.filter(conversation=scene.private, team=scene.sales).exists()
    assert notifications_of(cast.carol_membership) == [(NotificationKind.MENTION, 1)]
    assert notifications_of(cast.bob_membership) == []
    carol_row, bob_row = row(scene, cast.carol_membership, scene.private), row(scene, cast.bob_membership, scene.private)
    assert carol_row is not None
    assert carol_row.mentioned_at is not None
    assert carol_row.following
    assert bob_row is not None
    assert bob_row.mentioned_at is None
    assert not bob_row.following


def test_r40_mentions_of_another_organization_resolve_to_nothing(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    from postroom.testing.factories import TeamFactory

    beta_team = cast_to(Team, TeamFactory(organization=cast.org_b, name="Beta team"))
    body = f"{mention(cast.charlie_membership)} and {team_mention(beta_team)} and @[Ghost](member:999999)"
    comment = comment_as(cast.alice_membership, scene.shared, body)
    assert not CommentMention.objects.filter(comment=comment).exists()
    assert not Notification.objects.filter(recipient=cast.charlie_membership).exists()
    assert not ConversationShare.objects.filter(conversation=scene.shared, membership=cast.charlie_membership).exists()
    assert not ConversationShare.objects.filter(team=beta_team).exists()
    assert row(scene, cast.charlie_membership) is None
    html = str(shown(cast.alice_membership, selectors.comment_get(actor=cast.alice_membership, comment_id=comment.pk)).html)
    assert "mention" not in html  # plain text, not styled as a mention
    assert "@Charlie Outsider" in html


def test_comment_notifications_go_to_followers_and_assignees_and_fold(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    comment_as(cast.bob_membership, scene.shared, "first")  # Bob follows
    comment_as(cast.alice_membership, scene.shared, "second")
    comment_as(cast.alice_membership, scene.shared, "third")
    assert notifications_of(cast.bob_membership) == [(NotificationKind.COMMENT, 2)]  # folded into one unread
    # Alice follows because she shared it and commented; Bob's comment came before hers.
    assert notifications_of(cast.alice_membership) == [(NotificationKind.COMMENT, 1)]
    assert notifications_of(cast.carol_membership) == []  # an observer who does not follow


def test_a_mentioned_follower_gets_the_mention_not_also_a_comment_notification(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    comment_as(cast.bob_membership, scene.shared, "following")
    comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} look")
    assert notifications_of(cast.bob_membership) == [(NotificationKind.MENTION, 1)]


def test_no_notification_for_someone_who_lost_access(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    """Bob is assigned to the Support conversation, then leaves the team: the assignment row
    stays, but he can no longer see the conversation, so he is told nothing more."""
    cast = scene.cast
    from postroom.conversations import actions as conversation_actions
    from postroom.orgs import actions as org_actions

    conversation_actions.conversation_assign(actor=cast.alice_membership, conversation=scene.shared, assignee=cast.bob_membership)
    comment_as(cast.alice_membership, scene.shared, "before")
    assert notifications_of(cast.bob_membership) == [(NotificationKind.COMMENT, 1)]
    Notification.objects.filter(recipient=cast.bob_membership).update(read_at=scene.shared.created_at)
    org_actions.team_member_remove(actor=cast.alice_membership, team=scene.support, membership=cast.bob_membership)
    assert row(scene, cast.bob_membership) is None
    comment_as(cast.alice_membership, scene.shared, "after")
    assert Notification.objects.filter(recipient=cast.bob_membership, read_at__isnull=True).count() == 0
    # A mention shares it with him again: then he can see it, and the mention reaches him.
    comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} back?")
    assert Notification.objects.filter(recipient=cast.bob_membership, read_at__isnull=True).get().kind == NotificationKind.MENTION


def test_only_the_author_edits_and_deletes(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    comment = comment_as(cast.alice_membership, scene.shared, "original")
    with pytest.raises(PermissionDenied):
        actions.comment_edit(actor=cast.bob_membership, comment=comment, body="hijacked")
    with pytest.raises(PermissionDenied):
        actions.comment_delete(actor=cast.carol_membership, comment=comment)  # an admin too
    with pytest.raises(Http404):
        actions.comment_edit(actor=cast.charlie_membership, comment=comment, body="hijacked")
    with pytest.raises(Http404):
        actions.comment_delete(actor=cast.charlie_membership, comment=comment)
    comment.refresh_from_db()
    assert comment.body == "original"
    assert comment.deleted_at is None
    assert comment.edited_at is None


def test_editing_notifies_only_the_mentions_it_adds(
    scene: Scene, comment_as: Callable[..., Comment], django_capture_on_commit_callbacks: Any
) -> None:
    cast = scene.cast
    comment = comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} hi")
    with django_capture_on_commit_callbacks(execute=True):
        actions.comment_edit(
            actor=cast.alice_membership, comment=comment, body=f"{mention(cast.bob_membership)} hi {mention(cast.carol_membership)}"
        )
    comment.refresh_from_db()
    assert comment.edited_at is not None
    assert notifications_of(cast.bob_membership) == [(NotificationKind.MENTION, 1)]
    assert notifications_of(cast.carol_membership) == [(NotificationKind.MENTION, 1)]
    assert set(CommentMention.objects.filter(comment=comment).values_list("membership_id", flat=True)) == {
        cast.bob_membership.pk,
        cast.carol_membership.pk,
    }


def test_deleting_keeps_the_place_and_drops_the_content(
    scene: Scene, comment_as: Callable[..., Comment], django_capture_on_commit_callbacks: Any
) -> None:
    cast = scene.cast
    comment = comment_as(
        cast.alice_membership, scene.shared, f"secret {CANARY}",
        attachments=[actions.Upload(filename="notes.txt", content_type="text/plain", content=b"notes")],
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        actions.comment_delete(actor=cast.alice_membership, comment=comment)
        actions.comment_delete(actor=cast.alice_membership, comment=comment)  # again: nothing more happens
    comment = Comment.objects.get(pk=comment.pk)
    assert comment.body_sealed is None
    assert comment.deleted_at is not None
    assert not CommentAttachment.objects.filter(comment=comment).exists()
    entry = shown(cast.bob_membership, selectors.comment_get(actor=cast.bob_membership, comment_id=comment.pk))
    assert entry.html is None
    assert entry.attachments == []
    assert AuditEvent.objects.filter(action="comment.deleted").count() == 1
    assert CANARY not in str(AuditEvent.objects.values_list("details", flat=True)[0])
    with pytest.raises(ValidationError):
        actions.comment_edit(actor=cast.alice_membership, comment=comment, body="back")


def test_attachment_limits_are_named(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    big = actions.Upload(filename="big.bin", content_type="application/octet-stream", content=b"x" * (actions.MAX_ATTACHMENT_BYTES + 1))
    with pytest.raises(ValidationError, match="at most 10 MB"):
        comment_as(scene.cast.alice_membership, scene.shared, "big", attachments=[big])
    many = [actions.Upload(filename=f"{n}.txt", content_type="text/plain", content=b"x") for n in range(actions.MAX_ATTACHMENTS + 1)]
    with pytest.raises(ValidationError, match="at most 10 attachments"):
        comment_as(scene.cast.alice_membership, scene.shared, "many", attachments=many)
    assert not Comment.objects.exists()


def test_attachment_names_are_sanitised_and_sealed(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    upload = actions.Upload(
        filename='../../a"\r\nSet-Cookie: x.html', content_type="text/html; charset=utf-8", content=b"<script>1</script>"
    )
    comment = comment_as(scene.cast.alice_membership, scene.shared, "", attachments=[upload])  # a file alone is a comment
    [attachment] = CommentAttachment.objects.filter(comment=comment)
    assert "/" not in (attachment.filename or "")
    assert "\r" not in (attachment.filename or "")
    assert '"' not in (attachment.filename or "")
    assert attachment.content_type == "text/html"
    assert b"Set-Cookie" not in bytes(attachment.filename_sealed or b"")


def test_events_after_commit_carry_ids_only(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    events: list[dict[str, Any]] = []

    @receiver(conversation_event)
    def capture(sender: Any, **event: Any) -> None:
        events.append(event)

    try:
        comment = comment_as(scene.cast.alice_membership, scene.shared, f"{mention(scene.cast.bob_membership)} {CANARY}")
    finally:
        conversation_event.disconnect(capture)
    kinds = [event["kind"] for event in events]
    assert "commented" in kinds
    commented = next(event for event in events if event["kind"] == "commented")
    assert commented["details"] == {"comment_id": str(comment.pk)}
    assert commented["actor_id"] == scene.cast.alice_membership.pk
    counts = [event for event in events if event["kind"] == "notification"]
    assert [event["details"] for event in counts] == [{"membership_id": scene.cast.bob_membership.pk, "unread": 1}]
    assert CANARY not in repr(events)
