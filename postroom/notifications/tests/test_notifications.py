"""Who is notified of assignments and new messages, never someone who cannot see the
conversation; reading and marking read; the bell and the notifications page; the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from postroom.api.tests.helpers import ApiClient
from postroom.comments.models import Comment
from postroom.comments.tests.conftest import Scene, ingest_into, mention
from postroom.conversations import actions as conversation_actions
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Conversation, Direction
from postroom.conversations.tests.conftest import build_raw
from postroom.mailboxes.models import Folder, FolderRole
from postroom.notifications import actions, selectors
from postroom.notifications.models import Notification, NotificationKind
from postroom.orgs import actions as org_actions

pytestmark = pytest.mark.django_db


def kinds(member: Any) -> list[tuple[str, int]]:
    return list(Notification.objects.filter(recipient=member, read_at__isnull=True).order_by("created_at").values_list("kind", "count"))


def reply(scene: Scene, uid: int, capture: Any, **fields: Any) -> Conversation:
    fields.setdefault("message_id", f"<reply-{uid}@customer.example>")
    with capture(execute=True):
        conversation = ingest_into(
            scene.mailbox, uid, subject="Re: Shared order question", in_reply_to="<shared@customer.example>", **fields
        )
    assert conversation.pk == scene.shared.pk
    return conversation


def test_assigning_notifies_the_assignee_not_oneself(scene: Scene, django_capture_on_commit_callbacks: Any) -> None:
    cast = scene.cast
    with django_capture_on_commit_callbacks(execute=True):
        conversation_actions.conversation_assign(actor=cast.alice_membership, conversation=scene.shared, assignee=cast.bob_membership)
        conversation_actions.conversation_assign(actor=cast.alice_membership, conversation=scene.shared, assignee=cast.alice_membership)
    assert kinds(cast.bob_membership) == [(NotificationKind.ASSIGNED, 1)]
    assert Notification.objects.get(recipient=cast.bob_membership).actor_id == cast.alice_membership.pk
    assert kinds(cast.alice_membership) == []


def test_a_new_message_notifies_followers_and_assignees_not_observers(scene: Scene, django_capture_on_commit_callbacks: Any) -> None:
    cast = scene.cast
    conversation_actions.conversation_follow(actor=cast.bob_membership, conversation=scene.shared, following=True)
    reply(scene, 10, django_capture_on_commit_callbacks)
    reply(scene, 11, django_capture_on_commit_callbacks)
    assert kinds(cast.bob_membership) == [(NotificationKind.REPLY, 2)]  # folded
    assert kinds(cast.alice_membership) == [(NotificationKind.REPLY, 2)]  # she shared it, so she follows
    assert kinds(cast.carol_membership) == []  # a team observer who does not follow


def test_the_author_of_a_sent_message_is_not_notified_of_it(scene: Scene, django_capture_on_commit_callbacks: Any) -> None:
    cast = scene.cast
    conversation_actions.conversation_follow(actor=cast.bob_membership, conversation=scene.shared, following=True)
    sent = Folder.objects.create(mailbox=scene.mailbox, name="Sent", role=FolderRole.SENT, uidvalidity=9)
    raw = build_raw(
        subject="Re: Shared order question", sender="Alice <alice@acme.test>", to="dana@customer.example",
        message_id="<answer@acme.test>", in_reply_to="<shared@customer.example>",
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        message_ingest(mailbox=scene.mailbox, folder=sent, uidvalidity=9, uid=1, raw=raw, direction=Direction.OUTBOUND)
    assert kinds(cast.bob_membership) == [(NotificationKind.REPLY, 1)]
    assert kinds(cast.alice_membership) == []


def test_no_reply_notification_for_someone_who_cannot_see_the_conversation(scene: Scene, django_capture_on_commit_callbacks: Any) -> None:
    cast = scene.cast
    with django_capture_on_commit_callbacks(execute=True):
        conversation_actions.conversation_assign(actor=cast.alice_membership, conversation=scene.shared, assignee=cast.bob_membership)
    Notification.objects.all().delete()
    org_actions.team_member_remove(actor=cast.alice_membership, team=scene.support, membership=cast.bob_membership)
    reply(scene, 12, django_capture_on_commit_callbacks)
    assert kinds(cast.bob_membership) == []  # still an assignee on paper, but blind to it
    assert kinds(cast.alice_membership) == [(NotificationKind.REPLY, 1)]


def test_private_mail_notifies_nobody(scene: Scene, django_capture_on_commit_callbacks: Any) -> None:
    """A new message in a conversation nobody shares is the owner's inbox, not a notification."""
    cast = scene.cast
    conversation_actions.conversation_follow(actor=cast.alice_membership, conversation=scene.private, following=True)
    with django_capture_on_commit_callbacks(execute=True):
        ingest_into(
            scene.mailbox, 13, subject="Re: Private matter", message_id="<p2@customer.example>", in_reply_to="<private@customer.example>"
        )
    assert not Notification.objects.exists()


def test_notifications_of_a_conversation_one_can_no_longer_see_disappear(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} look")
    assert selectors.unread_count(actor=cast.bob_membership) == 1
    org_actions.team_member_remove(actor=cast.alice_membership, team=scene.support, membership=cast.bob_membership)
    # The mention shared it with him by name, so he still sees it; withdraw that too.
    conversation_actions.conversation_unshare(actor=cast.alice_membership, conversation=scene.shared, member=cast.bob_membership)
    assert selectors.unread_count(actor=cast.bob_membership) == 0
    assert selectors.notification_page(actor=cast.bob_membership) == []
    assert selectors.unread_for_user(user=cast.bob) == (0, [])


def test_the_bell_counts_past_the_few_it_lists(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    for number in range(3):
        comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} note {number}")
    count, latest = selectors.unread_for_user(user=cast.bob, limit=2)
    assert (count, len(latest)) == (3, 2)
    assert selectors.unread_for_user(user=cast.bob, limit=3)[0] == 3
    count, latest = selectors.unread_for_user(user=cast.bob, limit=4)
    assert (count, len(latest)) == (3, 3)


def test_mark_one_and_all_read(scene: Scene, comment_as: Callable[..., Comment], django_capture_on_commit_callbacks: Any) -> None:
    cast = scene.cast
    comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} one")
    comment_as(cast.alice_membership, scene.private, f"{mention(cast.bob_membership)} two")
    first, second = Notification.objects.filter(recipient=cast.bob_membership).order_by("created_at")
    actions.notification_mark_read(actor=cast.bob_membership, notification=first)
    assert selectors.unread_count(actor=cast.bob_membership) == 1
    with pytest.raises(Http404):
        actions.notification_mark_read(actor=cast.carol_membership, notification=second)
    assert actions.notifications_mark_all_read(actor=cast.bob_membership) == 1
    assert selectors.unread_count(actor=cast.bob_membership) == 0


# --- pages ------------------------------------------------------------------------------------------
def test_the_bell_counts_and_lists_unread_escaped(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    scene.shared.subject = "<img src=x onerror=alert('subject')>"
    scene.shared.save(update_fields=["subject_sealed"])
    comment_as(scene.cast.alice_membership, scene.shared, f"{mention(scene.cast.bob_membership)} look")
    html = client_as(scene.cast.bob).get("/o/acme/members/").content.decode()
    assert "data-notification-count>1<" in html
    assert "Alice Owner mentioned you" in html
    assert "&lt;img src=x onerror=alert(&#x27;subject&#x27;)&gt;" in html
    assert "<img src=x" not in html
    quiet = client_as(scene.cast.carol).get("/o/acme/members/").content.decode()
    assert "bell-count-zero" in quiet
    assert "Nothing new." in quiet


def test_opening_a_notification_marks_it_read_and_goes_to_the_comment(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    comment = comment_as(scene.cast.alice_membership, scene.shared, f"{mention(scene.cast.bob_membership)} look")
    notification = Notification.objects.get(recipient=scene.cast.bob_membership)
    client = client_as(scene.cast.bob)
    page = client.get(reverse("notifications:list", args=["acme"]))
    assert page.status_code == 200
    assert "Alice Owner mentioned you" in page.content.decode()
    notification.refresh_from_db()
    assert notification.read_at is None  # looking at the list marks nothing
    opened = client.post(reverse("notifications:open", args=["acme", notification.pk]))
    assert opened["Location"] == f"/o/acme/conversations/{scene.shared.pk}/#comment-{comment.pk}"
    notification.refresh_from_db()
    assert notification.read_at is not None
    back = client.post(reverse("notifications:read", args=["acme", notification.pk]), {"read": "0", "next": "https://evil.example/"})
    assert back["Location"] == "/o/acme/notifications/"  # no open redirect
    notification.refresh_from_db()
    assert notification.read_at is None
    client.post(reverse("notifications:read_all", args=["acme"]))
    assert selectors.unread_count(actor=scene.cast.bob_membership) == 0


@pytest.mark.parametrize("who", ["carol", "charlie"])
def test_r21_someone_elses_notification_is_404(scene: Scene, client_as, comment_as: Callable[..., Comment], who: str) -> None:  # type: ignore[no-untyped-def]
    comment_as(scene.cast.alice_membership, scene.shared, f"{mention(scene.cast.bob_membership)} look")
    notification = Notification.objects.get(recipient=scene.cast.bob_membership)
    client = client_as(getattr(scene.cast, who))
    slug = "acme" if who == "carol" else "beta"
    for name in ("open", "read"):
        assert client.post(reverse(f"notifications:{name}", args=[slug, notification.pk])).status_code == 404
        assert client.post(reverse(f"notifications:{name}", args=["acme", notification.pk])).status_code == 404
    api = ApiClient(getattr(scene.cast, who))
    assert api.patch(f"/orgs/{slug}/notifications/{notification.pk}", {"read": True}).status_code == 404
    assert api.patch(f"/orgs/acme/notifications/{notification.pk}", {"read": True}).status_code == 404
    assert not any(item["id"] == str(notification.pk) for item in api.get(f"/orgs/{slug}/notifications").json()["items"])
    notification.refresh_from_db()
    assert notification.read_at is None


# --- API ----------------------------------------------------------------------------------------------
def test_the_notifications_api_pages_and_marks_read(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    cast = scene.cast
    for number in range(3):
        comment_as(cast.alice_membership, scene.shared, f"{mention(cast.bob_membership)} {number}")
    bob = ApiClient(cast.bob)
    first = bob.get("/orgs/acme/notifications", limit=2).json()
    assert len(first["items"]) == 2
    assert first["next"]
    assert first["unread"] == 3
    assert first["items"][0]["summary"] == "Alice Owner mentioned you"
    assert first["items"][0]["kind"] == "mention"
    second = bob.get("/orgs/acme/notifications", limit=2, cursor=first["next"]).json()
    assert len(second["items"]) == 1
    assert second["next"] is None
    assert {item["id"] for item in first["items"] + second["items"]} == {
        str(pk) for pk in Notification.objects.values_list("pk", flat=True)
    }
    assert bob.get("/orgs/acme/notifications", cursor="garbage!").status_code == 422
    marked = bob.patch(f"/orgs/acme/notifications/{first['items'][0]['id']}", {"read": True})
    assert marked.status_code == 200
    assert marked.json()["read_at"]
    assert bob.get("/orgs/acme/notifications", unread=True).json()["unread"] == 2
    assert bob.post("/orgs/acme/notifications/read").json() == {"marked": 2}
    assert bob.get("/orgs/acme/notifications", unread=True).json()["items"] == []


def test_the_digest_setting_through_the_api(scene: Scene) -> None:
    bob = ApiClient(scene.cast.bob)
    assert bob.get("/orgs/acme/notifications/settings").json() == {"digest": "off"}
    assert bob.request("PUT", "/orgs/acme/notifications/settings", {"digest": "daily"}).json() == {"digest": "daily"}
    assert bob.request("PUT", "/orgs/acme/notifications/settings", {"digest": "weekly"}).status_code == 422
    assert bob.get("/orgs/acme/notifications/settings").json() == {"digest": "daily"}


def _aged(minutes: int) -> datetime:
    return timezone.now() - timedelta(minutes=minutes)


def test_the_bell_matches_the_orm(scene: Scene) -> None:
    """The bell's constant queries list what the ORM's filter lists — the person's unread
    notifications, in every organization of theirs, about conversations the recipient still
    sees, newest first (then by id) — with the same summary, subject and organization, and
    count them past the few listed."""
    from postroom.conversations.models import ConversationMember
    from postroom.notifications.display import bell_items, summary
    from postroom.notifications.selectors import _can_see_conversation
    from postroom.orgs.models import Membership

    cast = scene.cast
    bob, alice = cast.bob_membership, cast.alice_membership
    bob_at_beta = Membership.objects.create(organization=cast.org_b, user=cast.bob)
    beta_conversation = Conversation.objects.create(organization=cast.org_b, last_message_at=timezone.now())
    beta_conversation.subject = "Beta's question"
    beta_conversation.save()
    ConversationMember.objects.create(conversation=beta_conversation, membership=bob_at_beta, organization=cast.org_b,
                                      last_activity_at=timezone.now())  # fmt: skip
    conversation_actions.conversation_share(actor=alice, conversation=scene.private, member=bob)
    cast.carol.name = ""
    cast.carol.save(update_fields=["name"])
    now = timezone.now()
    same_time = now - timedelta(minutes=5)

    def notify(recipient: Any, conversation: Conversation, kind: str, minutes: int, **fields: Any) -> None:
        at = same_time if minutes == 5 else now - timedelta(minutes=minutes)
        Notification.objects.create(organization_id=recipient.organization_id, recipient=recipient, conversation=conversation,
                                    kind=kind, created_at=at, **fields)  # fmt: skip

    notify(bob, scene.shared, NotificationKind.MENTION, 1, actor=alice)
    notify(bob, scene.shared, NotificationKind.ASSIGNED, 2, actor=cast.carol_membership)
    notify(bob, scene.private, NotificationKind.REPLY, 3, count=3)
    notify(bob, scene.shared, NotificationKind.COMMENT, 4, actor=alice)
    notify(bob, scene.shared, NotificationKind.COMMENT, 5, actor=None, count=2)
    notify(bob, scene.private, NotificationKind.REPLY, 5)
    notify(bob, scene.shared, NotificationKind.MENTION, 6, actor=alice, read_at=now)  # read
    notify(bob_at_beta, beta_conversation, NotificationKind.REPLY, 7)
    notify(alice, scene.shared, NotificationKind.MENTION, 8, actor=bob)  # someone else's
    notify(bob, scene.shared, NotificationKind.MENTION, 9, actor=alice)
    alices_own = ingest_into(scene.mailbox, 50, subject="Alice's own", message_id="<own@customer.example>")
    notify(bob, alices_own, NotificationKind.REPLY, 10)  # about a conversation he does not see
    expected = list(
        Notification.objects.filter(recipient__user=cast.bob, read_at__isnull=True)
        .filter(_can_see_conversation())
        .select_related("actor__user", "conversation", "organization")
        .order_by("-created_at", "-id")
    )
    assert len(expected) == 8
    assert {notification.organization_id for notification in expected} == {cast.org_a.pk, cast.org_b.pk}
    for limit in range(1, len(expected) + 2):
        count, rows = selectors.unread_for_user(user=cast.bob, limit=limit)
        assert count == len(expected)
        assert [row.id for row in rows] == [notification.pk for notification in expected[:limit]]
        items = bell_items(rows)
        assert [(item.pk, item.summary, item.subject, item.created_at, item.organization_slug, item.organization_name) for item in items] == [
            (n.pk, summary(n), n.conversation.subject or "(no subject)", n.created_at, n.organization.slug, n.organization.name)
            for n in expected[:limit]
        ]
    assert {item.summary for item in bell_items(selectors.unread_for_user(user=cast.bob, limit=8)[1])} >= {
        "Alice Owner mentioned you", "carol assigned you", "3 new messages", "2 new comments",
    }  # fmt: skip
