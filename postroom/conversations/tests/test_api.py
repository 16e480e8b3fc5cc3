"""The team inbox through the REST API, with the cast: Alice (owner of A) and her mail, Bob her
teammate (who sees only what is shared with him), Carol (admin), Charlie in organization B.

Every answer is checked against the OpenAPI document and for keys naming secrets (ApiClient).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from postroom.accounts.api_tokens import api_token_create
from postroom.api.tests.helpers import ApiClient
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.conversations import actions
from postroom.conversations.api import LabelColor
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import (
    Assignment,
    Conversation,
    ConversationLabel,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Label,
    Message,
    MessageCopy,
    Place,
    TimelineEvent,
)
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.tests.factories import STORED_PASSWORD, make_mailbox
from postroom.orgs import actions as org_actions
from postroom.orgs.models import Team

pytestmark = pytest.mark.django_db

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2"
                    "21bc330000000049454e44ae426082")  # fmt: skip


def ingest(mailbox: Mailbox, uid: int, raw: bytes) -> Message:
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw).message


def token(user: Any, scope: str) -> str:
    return api_token_create(user=user, name="Script", scope=scope, expires_at=None).token


@pytest.fixture
def support(cast: Cast) -> Team:
    """Alice's and Bob's team (Carol, an admin, is not in it)."""
    team = org_actions.team_create(actor=cast.alice_membership, name="Support")
    for member in (cast.alice_membership, cast.bob_membership):
        org_actions.team_member_add(actor=cast.alice_membership, team=team, membership=member)
    return team


@pytest.fixture
def alices(alice_mailbox: Mailbox) -> Message:
    """A customer's message in Alice's INBOX: a private conversation of hers."""
    return ingest(alice_mailbox, 1, build_raw(cc="Erin <erin@customer.example>"))


@pytest.fixture
def charlies(charlie_mailbox: Mailbox) -> Message:
    return ingest(charlie_mailbox, 1, build_raw(subject="Beta's secret plan", to="charlie@beta.test"))


def items(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    return response.json()["items"]


# --- the list --------------------------------------------------------------------------------------
def test_the_inbox_lists_a_members_own_conversations_with_their_summary(cast: Cast, alices: Message) -> None:
    [item] = items(ApiClient(cast.alice).get("/orgs/acme/conversations"))
    assert item["id"] == str(alices.conversation_id)
    assert item["subject"] == "Order 1234 never arrived"
    assert item["snippet"].startswith("Hello,")
    assert (item["unread"], item["status"], item["place"], item["is_shared"]) == (True, "open", "inbox", False)
    assert (item["message_count"], item["has_attachments"], item["assignees"], item["labels"]) == (1, False, [], [])
    assert item["snoozed_until"] is None
    # The teammate, the admin and the outsider see none of it.
    assert items(ApiClient(cast.bob).get("/orgs/acme/conversations", view="all")) == []
    assert items(ApiClient(cast.carol).get("/orgs/acme/conversations", view="all")) == []
    assert ApiClient(cast.charlie).get("/orgs/acme/conversations").status_code == 404


def test_views_and_filters(cast: Cast, alice_mailbox: Mailbox, support: Team) -> None:
    first = ingest(alice_mailbox, 1, build_raw(message_id="<one@customer.example>", subject="One"))
    second = ingest(alice_mailbox, 2, build_raw(message_id="<two@customer.example>", subject="Two"))
    third = ingest(alice_mailbox, 3, build_raw(message_id="<three@customer.example>", subject="Three"))
    alice, bob = cast.alice_membership, cast.bob_membership
    urgent = actions.label_create(actor=alice, name="Urgent", personal=False)
    actions.conversation_share(actor=alice, conversation=first.conversation, team=support)
    actions.conversation_assign(actor=alice, conversation=first.conversation, assignee=bob)
    actions.conversation_label(actor=alice, conversation=second.conversation, label=urgent)
    actions.conversation_mark_read(actor=alice, conversation=second.conversation, read=True)
    actions.conversation_archive(actor=alice, conversation=third.conversation)

    def subjects(user: Any, **query: Any) -> list[str]:
        return sorted(item["subject"] for item in items(ApiClient(user).get("/orgs/acme/conversations", **query)))

    assert subjects(cast.alice) == ["One", "Two"]
    assert subjects(cast.alice, view="closed") == ["Three"]
    assert subjects(cast.alice, view="all") == ["One", "Three", "Two"]
    assert subjects(cast.alice, unread=True) == ["One"]
    assert subjects(cast.alice, unread=False) == ["Two"]
    assert subjects(cast.alice, view="label", label_id=str(urgent.pk)) == ["Two"]
    assert subjects(cast.alice, view="all", label_id=str(urgent.pk)) == ["Two"]
    assert subjects(cast.alice, view="team", team_id=support.pk) == ["One"]
    assert subjects(cast.alice, view="all", team_id=support.pk) == ["One"]
    assert subjects(cast.alice, view="tasks") == ["One"]
    assert subjects(cast.alice, view="tasks", assignee_id=alice.pk) == []
    assert subjects(cast.alice, view="all", assignee_id=bob.pk) == ["One"]
    assert subjects(cast.bob, view="assigned") == ["One"]
    assert subjects(cast.bob, view="team", team_id=support.pk) == ["One"]
    # What a view needs, and ids that are not the caller's to use.
    client = ApiClient(cast.alice)
    assert client.get("/orgs/acme/conversations", view="team").status_code == 422
    assert client.get("/orgs/acme/conversations", view="label").status_code == 422
    assert client.get("/orgs/acme/conversations", view="nonsense").status_code == 422
    other_team = org_actions.team_create(actor=alice, name="Sales")  # Alice is not in it
    assert client.get("/orgs/acme/conversations", view="team", team_id=other_team.pk).status_code == 404
    betas = org_actions.team_create(actor=cast.charlie_membership, name="Beta team")
    beta_label = actions.label_create(actor=cast.charlie_membership, name="Beta", personal=False)
    bobs_label = actions.label_create(actor=bob, name="Mine", personal=True)
    assert client.get("/orgs/acme/conversations", view="team", team_id=betas.pk).status_code == 404
    assert client.get("/orgs/acme/conversations", view="label", label_id=str(beta_label.pk)).status_code == 404
    assert client.get("/orgs/acme/conversations", view="label", label_id=str(bobs_label.pk)).status_code == 404
    assert client.get("/orgs/acme/conversations", assignee_id=cast.charlie_membership.pk).status_code == 404


def test_the_list_pages_by_last_activity_without_gaps_or_repeats(cast: Cast, alice_mailbox: Mailbox) -> None:
    start = timezone.now() - timedelta(days=30)
    for number in range(7):
        raw = build_raw(message_id=f"<m{number}@customer.example>", subject=f"Order {number}", date=start + timedelta(days=number))
        ingest(alice_mailbox, number + 1, raw)
    # Two with the same activity time: the conversation id breaks the tie.
    ConversationMember.objects.filter(conversation__subject_index__isnull=False).filter(
        conversation__in=Conversation.objects.order_by("last_message_at")[:2].values("pk")
    ).update(last_activity_at=start)
    client = ApiClient(cast.alice)
    seen: list[str] = []
    cursor = None
    while True:
        body = client.get("/orgs/acme/conversations", limit=3, **({"cursor": cursor} if cursor else {})).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break
    expected = ConversationMember.objects.filter(membership=cast.alice_membership).order_by("-last_activity_at", "-conversation_id")
    assert seen == [str(pk) for pk in expected.values_list("conversation_id", flat=True)]
    assert len(seen) == 7
    # A cursor is bound to its list and its member.
    first_page = client.get("/orgs/acme/conversations", limit=3).json()
    assert ApiClient(cast.carol).get("/orgs/acme/conversations", cursor=first_page["next"]).status_code == 422
    assert client.get("/orgs/acme/labels", cursor=first_page["next"]).status_code == 422


def test_counts_and_snippets_come_only_from_messages_the_caller_can_see(cast: Cast, alices: Message, support: Team) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, team=support)
    carol_mailbox = make_mailbox(cast.carol_membership, address="carol@acme.test")
    carols = ingest(
        carol_mailbox, 1,
        build_raw(message_id="<carol@customer.example>", in_reply_to="<first@customer.example>", to="carol@acme.test",
                  text="Carol's private follow-up", attachments=(("private.pdf", "application/pdf", b"%PDF private"),)),
    )  # fmt: skip
    assert carols.conversation_id == alices.conversation_id
    [bobs_view] = items(ApiClient(cast.bob).get("/orgs/acme/conversations", view="team", team_id=support.pk))
    assert (bobs_view["message_count"], bobs_view["has_attachments"]) == (1, False)
    assert "Carol" not in bobs_view["snippet"]
    messages = items(ApiClient(cast.bob).get(f"/orgs/acme/conversations/{alices.conversation_id}/messages"))
    assert [message["id"] for message in messages] == [str(alices.pk)]
    assert ApiClient(cast.bob).get(f"/orgs/acme/messages/{carols.pk}").status_code == 404
    [carols_view] = items(ApiClient(cast.carol).get("/orgs/acme/conversations"))
    assert (carols_view["message_count"], carols_view["has_attachments"]) == (1, True)
    assert carols_view["snippet"].startswith("Carol's private")


# --- one conversation ------------------------------------------------------------------------------
def test_the_detail_has_shares_assignees_labels_and_the_timeline(cast: Cast, alices: Message, support: Team) -> None:
    alice, bob = cast.alice_membership, cast.bob_membership
    conversation = alices.conversation
    urgent = actions.label_create(actor=alice, name="Urgent", personal=False, color="#dc2626")
    mine = actions.label_create(actor=alice, name="Later", personal=True)
    actions.conversation_share(actor=alice, conversation=conversation, team=support)
    actions.conversation_assign(actor=alice, conversation=conversation, assignee=bob)
    actions.conversation_label(actor=alice, conversation=conversation, label=urgent)
    actions.conversation_label(actor=alice, conversation=conversation, label=mine)
    until = timezone.now() + timedelta(days=1)
    actions.conversation_snooze(actor=alice, conversation=conversation, until=until)
    actions.conversation_close(actor=alice, conversation=conversation)

    body = ApiClient(cast.alice).get(f"/orgs/acme/conversations/{conversation.pk}").json()
    assert body["status"] == "closed"
    # Bob sees it through the team already, so assigning him added no share of his own.
    assert body["shares"] == {"organization": False, "teams": [{"id": support.pk, "name": "Support"}], "members": []}
    assert body["assignees"] == [{"id": bob.pk, "name": "Bob Member", "email": "bob@acme.test"}]
    assert [(label["name"], label["personal"]) for label in body["labels"]] == [("Later", True), ("Urgent", False)]
    timeline = body["timeline"]
    assert [event["kind"] for event in timeline] == ["shared", "assigned", "labelled", "snoozed", "closed"]
    assert {event["actor"]["id"] for event in timeline} == {alice.pk}
    assert timeline[0]["team"] == {"id": support.pk, "name": "Support"}
    assert timeline[1]["member"]["id"] == bob.pk
    assert timeline[2]["label"]["name"] == "Urgent"  # personal labels never go on the timeline
    assert timeline[3]["until"].startswith(until.date().isoformat())

    # Bob sees the organization label, not Alice's personal one.
    bobs = ApiClient(cast.bob).get(f"/orgs/acme/conversations/{conversation.pk}").json()
    assert [label["name"] for label in bobs["labels"]] == ["Urgent"]
    assert "Later" not in json.dumps(bobs)


def test_a_conversation_is_404_for_whoever_cannot_see_it(cast: Cast, alices: Message, charlies: Message) -> None:
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    assert ApiClient(cast.alice).get(path).status_code == 200
    for user in (cast.bob, cast.carol, cast.charlie):
        assert ApiClient(user).get(path).status_code == 404
        assert ApiClient(user).get(f"{path}/messages").status_code == 404
        assert ApiClient(user).get(f"/orgs/acme/messages/{alices.pk}").status_code == 404
    # Another organization's ids under one's own slug, and one's ids under another's slug.
    alice = ApiClient(cast.alice)
    assert alice.get(f"/orgs/acme/conversations/{charlies.conversation_id}").status_code == 404
    assert alice.get(f"/orgs/acme/messages/{charlies.pk}").status_code == 404
    assert alice.get(f"/orgs/beta/conversations/{charlies.conversation_id}").status_code == 404
    assert "secret plan" not in json.dumps(items(alice.get("/orgs/acme/conversations", view="all")))


# --- messages --------------------------------------------------------------------------------------
HOSTILE_HTML = """<p onclick="alert(1)">Hello <b>there</b></p>
<script>alert(2)</script>
<img src="https://tracker.example/pixel.gif" width="1" height="1">
<img src="https://images.example/logo.png" alt="Logo">
<img src="cid:logo@customer.example" alt="Inline">
<a href="javascript:alert(3)">click</a><a href="https://example.org/">site</a>"""


def test_messages_have_addresses_text_sanitised_html_and_attachments(cast: Cast, alice_mailbox: Mailbox) -> None:
    from email.message import EmailMessage

    raw_message = EmailMessage()
    raw_message["Subject"] = "Invoice"
    raw_message["From"] = "Dana Customer <dana@customer.example>"
    raw_message["To"] = "Alice <alice@acme.test>"
    raw_message["Cc"] = "erin@customer.example"
    raw_message["Reply-To"] = "billing@customer.example"
    raw_message["Message-ID"] = "<invoice@customer.example>"
    raw_message["Date"] = "Mon, 02 Mar 2026 09:30:00 +0000"
    raw_message.set_content("Hello there\n")
    raw_message.add_alternative(HOSTILE_HTML, subtype="html")
    html_part = next(part for part in raw_message.iter_parts() if part.get_content_type() == "text/html")
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@customer.example>")
    raw_message.add_attachment(b"%PDF invoice", maintype="application", subtype="pdf", filename="../invoice\u202egnp.pdf")
    message = ingest(alice_mailbox, 1, raw_message.as_bytes())

    client = ApiClient(cast.alice)
    [item] = items(client.get(f"/orgs/acme/conversations/{message.conversation_id}/messages"))
    assert item == client.get(f"/orgs/acme/messages/{message.pk}").json()
    assert item["from"] == [{"name": "Dana Customer", "address": "dana@customer.example"}]
    assert item["to"] == [{"name": "Alice", "address": "alice@acme.test"}]
    assert item["cc"] == [{"name": "", "address": "erin@customer.example"}]
    assert item["reply_to"] == [{"name": "", "address": "billing@customer.example"}]
    assert (item["subject"], item["direction"], item["sent_at"]) == ("Invoice", "inbound", "2026-03-02T09:30:00Z")
    assert item["text"] == "Hello there\n"
    html = item["html"]
    for dangerous in ("script", "onclick", "javascript:", "tracker.example", "images.example"):
        assert dangerous not in html
    assert "<b>there</b>" in html
    assert item["remote_content_blocked"] == 1
    assert item["trackers_removed"] == 1
    by_name = {attachment["filename"]: attachment for attachment in item["attachments"]}
    pdf = by_name["invoice gnp.pdf"]  # the sender's path and bidi override are not shown
    assert (pdf["content_type"], pdf["size"], pdf["is_inline"]) == ("application/pdf", 12, False)
    [inline] = [attachment for attachment in item["attachments"] if attachment["is_inline"]]
    assert f'src="{inline["download_url"]}"' in html  # cid: points at the API download

    download = client.get(pdf["download_url"])
    assert download.content == b"%PDF invoice"
    assert download["Content-Type"] == "application/octet-stream"
    assert download["X-Content-Type-Options"] == "nosniff"
    assert download["Content-Security-Policy"].startswith("sandbox")
    assert download["Content-Disposition"].startswith("attachment;")
    assert AuditEvent.objects.filter(action="message.attachment_downloaded", actor=cast.alice).count() == 1
    for user in (cast.bob, cast.charlie):
        assert ApiClient(user).get(pdf["download_url"]).status_code == 404
        assert (
            ApiClient(user).get(pdf["download_url"].replace("/acme/", f"/{user.memberships.get().organization.slug}/")).status_code == 404
        )


def test_messages_page_oldest_first_even_without_a_date(cast: Cast, alice_mailbox: Mailbox) -> None:
    start = timezone.now() - timedelta(days=10)
    ids = []
    for number in range(5):
        raw = build_raw(
            message_id=f"<m{number}@customer.example>", in_reply_to="<m0@customer.example>" if number else None,
            date=start + timedelta(days=number),
        )  # fmt: skip
        ids.append(ingest(alice_mailbox, 10 - number, raw).pk)  # stored newest first, as an import does
    Message.objects.filter(pk=ids[2]).update(sent_at=None)  # no Date: ordered by when it was stored
    conversation_id = Message.objects.get(pk=ids[0]).conversation_id
    client = ApiClient(cast.alice)
    first = client.get(f"/orgs/acme/conversations/{conversation_id}/messages", limit=2).json()
    second = client.get(f"/orgs/acme/conversations/{conversation_id}/messages", limit=2, cursor=first["next"]).json()
    third = client.get(f"/orgs/acme/conversations/{conversation_id}/messages", limit=2, cursor=second["next"]).json()
    walked = [item["id"] for page in (first, second, third) for item in page["items"]]
    assert sorted(walked) == sorted(str(pk) for pk in ids)
    assert len(set(walked)) == 5
    assert third["next"] is None
    dated = [item["id"] for page in (first, second, third) for item in page["items"] if item["sent_at"] is not None]
    assert dated == [str(pk) for pk in ids if pk != ids[2]]


# --- actions ---------------------------------------------------------------------------------------
def state() -> dict[str, list[Any]]:
    """Everything a conversation action may change."""
    return {
        "members": list(ConversationMember.objects.order_by("pk").values_list("pk", "place", "unread", "snoozed_until", "following")),
        "conversations": list(Conversation.objects.order_by("pk").values_list("pk", "status", "shared_with_organization", "is_shared")),
        "shares": list(ConversationShare.objects.order_by("pk").values_list("pk", "team_id", "membership_id")),
        "assignments": list(Assignment.objects.order_by("pk").values_list("pk", "membership_id")),
        "labels": list(ConversationLabel.objects.order_by("pk").values_list("pk", "label_id")),
        "copies": list(MessageCopy.objects.order_by("pk").values_list("pk", "seen", "gone_at")),
        "timeline": list(TimelineEvent.objects.order_by("pk").values_list("pk", flat=True)),
        "outgoing": list(Message.objects.order_by("pk").values_list("pk", flat=True)),
    }


def action_bodies(cast: Cast, support: Team, label: Label) -> dict[str, dict[str, Any]]:
    """Every action endpoint, with a body that would be accepted on a conversation one can see."""
    simple = ("read", "unread", "archive", "inbox", "trash", "spam", "close", "reopen", "unsnooze", "follow", "unfollow")
    return {
        **{name: {} for name in simple},
        "snooze": {"until": (timezone.now() + timedelta(days=1)).isoformat()},
        "assign": {"membership_id": cast.carol_membership.pk},
        "unassign": {"membership_id": cast.carol_membership.pk},
        "share": {"team_id": support.pk},
        "unshare": {"organization": True},
        "label": {"label_id": str(label.pk)},
        "unlabel": {"label_id": str(label.pk)},
        "messages": {"mailbox_id": str(Mailbox.objects.filter(owner=cast.alice_membership).first().pk), "text": "Hi"},  # type: ignore[union-attr]
    }


def test_every_action_is_404_without_access_and_403_for_a_read_token(cast: Cast, alices: Message, charlies: Message, support: Team) -> None:
    label = actions.label_create(actor=cast.alice_membership, name="Urgent", personal=False)
    bodies = action_bodies(cast, support, label)
    before = state()
    alice, read_only = ApiClient(cast.alice), ApiClient(token=token(cast.alice, "read"))
    for name, body in bodies.items():
        path = f"/orgs/acme/conversations/{alices.conversation_id}/{name}"
        assert ApiClient(cast.bob).post(path, body).status_code == 404, name  # a teammate it is not shared with
        assert ApiClient(cast.carol).post(path, body).status_code == 404, name  # admins read no private mail
        assert ApiClient(cast.charlie).post(path, body).status_code == 404, name  # the outsider
        assert ApiClient(cast.charlie).post(path.replace("/acme/", "/beta/"), body).status_code == 404, name
        assert alice.post(f"/orgs/acme/conversations/{charlies.conversation_id}/{name}", body).status_code == 404, name
        assert read_only.post(path, body).status_code == 403, name
    assert state() == before


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("read", lambda row, conversation: not row.unread),
        ("archive", lambda row, conversation: row.place == Place.ARCHIVE),
        ("trash", lambda row, conversation: row.place == Place.TRASH),
        ("spam", lambda row, conversation: row.place == Place.SPAM),
        ("close", lambda row, conversation: row.place == Place.ARCHIVE),  # a private conversation: archived
        ("follow", lambda row, conversation: row.following),
    ],
)
def test_simple_actions_as_the_owner(cast: Cast, alices: Message, name: str, check: Any) -> None:
    for role in (FolderRole.ARCHIVE, FolderRole.TRASH, FolderRole.JUNK):
        Folder.objects.create(mailbox=alices.copies.get().mailbox, name=role.title(), role=role, uidvalidity=7)
    response = ApiClient(cast.alice).post(f"/orgs/acme/conversations/{alices.conversation_id}/{name}")
    assert response.status_code == 200
    assert response.json()["changed"] is True
    row = ConversationMember.objects.get(membership=cast.alice_membership)
    assert check(row, row.conversation)
    assert response.json()["conversation"]["place"] == row.place
    # Again: nothing left to change.
    assert ApiClient(cast.alice).post(f"/orgs/acme/conversations/{alices.conversation_id}/{name}").json()["changed"] is False


def test_undoing_actions(cast: Cast, alices: Message) -> None:
    client = ApiClient(cast.alice)
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    client.post(f"{path}/read")
    assert client.post(f"{path}/unread").json()["conversation"]["unread"] is True
    client.post(f"{path}/archive")
    assert client.post(f"{path}/inbox").json()["conversation"]["place"] == "inbox"
    client.post(f"{path}/follow")
    assert client.post(f"{path}/unfollow").json()["conversation"]["following"] is False


def test_snooze(cast: Cast, alices: Message) -> None:
    client = ApiClient(cast.alice)
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    until = timezone.now() + timedelta(hours=3)
    body = client.post(f"{path}/snooze", {"until": until.isoformat()}).json()
    assert body["changed"] is True
    assert body["conversation"]["snoozed_until"] is not None
    assert items(client.get("/orgs/acme/conversations")) == []
    assert len(items(client.get("/orgs/acme/conversations", view="snoozed"))) == 1
    past = client.post(f"{path}/snooze", {"until": (timezone.now() - timedelta(hours=1)).isoformat()})
    assert past.status_code == 422
    assert past.json()["errors"] == [{"field": "until", "message": "Snooze until a time in the future."}]
    naive = client.post(f"{path}/snooze", {"until": "2099-01-01T10:00:00"})  # no time zone: whose 10 o'clock?
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "until"
    assert client.post(f"{path}/snooze", {"until": "9999-12-31T23:00:00-05:00"}).status_code == 422  # past 9999 in UTC
    assert client.post(f"{path}/unsnooze").json()["conversation"]["snoozed_until"] is None


def test_assign_and_unassign(cast: Cast, alices: Message, charlies: Message) -> None:
    client = ApiClient(cast.alice)
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    body = client.post(f"{path}/assign", {"membership_id": cast.bob_membership.pk}).json()
    assert body["changed"] is True
    assert [assignee["id"] for assignee in body["conversation"]["assignees"]] == [cast.bob_membership.pk]
    # Assigning shared it into Bob's inbox.
    assert [item["id"] for item in items(ApiClient(cast.bob).get("/orgs/acme/conversations"))] == [str(alices.conversation_id)]
    assert client.post(f"{path}/assign", {"membership_id": cast.bob_membership.pk}).json()["changed"] is False
    assert client.post(f"{path}/assign", {"membership_id": cast.charlie_membership.pk}).status_code == 404
    assert client.post(f"{path}/assign", {"membership_id": 999_999}).status_code == 404
    assert client.post(f"{path}/unassign", {"membership_id": cast.bob_membership.pk}).json()["conversation"]["assignees"] == []
    assert client.post(f"{path}/assign", {}).status_code == 422
    # JSON types are taken as they are: true is not the member with id 1, "3" is not 3.
    assert client.post(f"{path}/assign", {"membership_id": True}).status_code == 422
    assert client.post(f"{path}/assign", {"membership_id": str(cast.carol_membership.pk)}).status_code == 422
    assert client.post(f"{path}/share", {"organization": 1}).status_code == 422
    assert client.post(f"{path}/snooze", {"until": 4_102_444_800}).status_code == 422  # not seconds since 1970
    assert Assignment.objects.count() == 0


def test_share_and_unshare(cast: Cast, alices: Message, support: Team) -> None:
    client = ApiClient(cast.alice)
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    body = client.post(f"{path}/share", {"team_id": support.pk}).json()
    assert (body["changed"], body["conversation"]["is_shared"]) == (True, True)
    assert len(items(ApiClient(cast.bob).get("/orgs/acme/conversations", view="team", team_id=support.pk))) == 1
    assert client.post(f"{path}/share", {"membership_id": cast.carol_membership.pk}).json()["changed"] is True
    assert client.post(f"{path}/share", {"organization": True}).json()["changed"] is True
    shares = ApiClient(cast.carol).get(path).json()["shares"]
    assert (shares["organization"], [team["id"] for team in shares["teams"]], [m["id"] for m in shares["members"]]) == (
        True, [support.pk], [cast.carol_membership.pk])  # fmt: skip
    # Exactly one target; none of another organization.
    for wrong in ({}, {"team_id": support.pk, "organization": True}, {"organization": False}):
        assert client.post(f"{path}/share", wrong).status_code == 422
    betas = org_actions.team_create(actor=cast.charlie_membership, name="Beta team")
    assert client.post(f"{path}/share", {"team_id": betas.pk}).status_code == 404
    assert client.post(f"{path}/share", {"membership_id": cast.charlie_membership.pk}).status_code == 404
    # Bob neither shared it nor holds it in a mailbox, and is no admin.
    assert ApiClient(cast.bob).post(f"{path}/unshare", {"team_id": support.pk}).status_code == 403
    assert AuditEvent.objects.filter(action="conversation.shared").count() == 3
    for target in ({"team_id": support.pk}, {"membership_id": cast.carol_membership.pk}, {"organization": True}):
        assert client.post(f"{path}/unshare", target).json()["changed"] is True
    assert ApiClient(cast.bob).get(path).status_code == 404
    assert AuditEvent.objects.filter(action="conversation.unshared").count() == 3


def test_an_unshare_that_ends_the_callers_own_access_answers_no_conversation(cast: Cast, alices: Message) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, organization=True)
    response = ApiClient(cast.carol).post(f"/orgs/acme/conversations/{alices.conversation_id}/unshare", {"organization": True})
    assert response.json() == {"changed": True, "conversation": None}


def test_label_and_unlabel(cast: Cast, alices: Message) -> None:
    client = ApiClient(cast.alice)
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    mine = actions.label_create(actor=cast.alice_membership, name="Later", personal=True)
    bobs = actions.label_create(actor=cast.bob_membership, name="Bob's", personal=True)
    beta = actions.label_create(actor=cast.charlie_membership, name="Beta", personal=False)
    assert [label["name"] for label in client.post(f"{path}/label", {"label_id": str(mine.pk)}).json()["conversation"]["labels"]] == [
        "Later"
    ]
    assert client.post(f"{path}/label", {"label_id": str(bobs.pk)}).status_code == 404
    assert client.post(f"{path}/label", {"label_id": str(beta.pk)}).status_code == 404
    assert client.post(f"{path}/label", {"label_id": "not-a-uuid"}).status_code == 422
    assert client.post(f"{path}/unlabel", {"label_id": str(mine.pk)}).json()["conversation"]["labels"] == []


def test_reopen_after_close_of_a_shared_conversation(cast: Cast, alices: Message, support: Team) -> None:
    actions.conversation_share(actor=cast.alice_membership, conversation=alices.conversation, team=support)
    client = ApiClient(cast.bob)
    path = f"/orgs/acme/conversations/{alices.conversation_id}"
    assert client.post(f"{path}/close").json()["conversation"]["status"] == "closed"
    assert Conversation.objects.get().status == ConversationStatus.CLOSED
    assert client.post(f"{path}/reopen").json()["conversation"]["status"] == "open"


# --- labels ----------------------------------------------------------------------------------------
def test_labels_personal_for_everyone_organization_labels_for_admins(cast: Cast) -> None:
    bob, carol = ApiClient(cast.bob), ApiClient(cast.carol)
    created = bob.post("/orgs/acme/labels", {"name": "  Follow   up ", "color": "#16a34a", "personal": True})
    assert created.status_code == 201
    assert (created.json()["name"], created.json()["personal"]) == ("Follow up", True)
    assert bob.post("/orgs/acme/labels", {"name": "Billing", "personal": False}).status_code == 403
    org_label = carol.post("/orgs/acme/labels", {"name": "Billing", "personal": False}).json()
    assert org_label["color"] == "#6b7280"
    assert carol.post("/orgs/acme/labels", {"name": "billing", "personal": False}).json()["errors"][0]["field"] == "name"
    assert carol.post("/orgs/acme/labels", {"name": "Red", "personal": True, "color": "red"}).status_code == 422
    assert carol.post("/orgs/acme/labels", {"name": "Bad\x00name", "personal": True}).status_code == 422
    assert carol.post("/orgs/acme/labels", {"name": "Bad\ud800name", "personal": True}).status_code == 422
    assert carol.post("/orgs/acme/labels", {"name": "   ", "personal": True}).status_code == 422
    # Each sees the organization's labels and their own.
    assert [label["name"] for label in items(bob.get("/orgs/acme/labels"))] == ["Billing", "Follow up"]
    assert [label["name"] for label in items(carol.get("/orgs/acme/labels"))] == ["Billing"]
    assert items(ApiClient(cast.charlie).get("/orgs/beta/labels")) == []
    bobs_path = f"/orgs/acme/labels/{created.json()['id']}"
    org_path = f"/orgs/acme/labels/{org_label['id']}"
    assert carol.get(bobs_path).status_code == 404  # a personal label is its owner's alone
    assert carol.patch(bobs_path, {"name": "Mine now"}).status_code == 404
    assert carol.delete(bobs_path).status_code == 404
    assert ApiClient(cast.charlie).get(org_path).status_code == 404
    assert ApiClient(cast.charlie).get(org_path.replace("/acme/", "/beta/")).status_code == 404
    # Members use organization labels but do not change them.
    assert bob.get(org_path).json()["name"] == "Billing"
    assert bob.patch(org_path, {"name": "Invoices"}).status_code == 403
    assert bob.delete(org_path).status_code == 403
    assert carol.patch(org_path, {"color": "#dc2626"}).json() == {**org_label, "color": "#dc2626"}
    assert carol.patch(org_path, {"name": "Invoices"}).json()["name"] == "Invoices"
    assert bob.patch(bobs_path, {"name": "Invoices"}).status_code == 200  # personal names are per member
    carol.post("/orgs/acme/labels", {"name": "Refunds", "personal": False})
    assert carol.patch(org_path, {"name": "refunds"}).status_code == 422
    assert carol.delete(org_path).status_code == 204
    assert bob.delete(bobs_path).status_code == 204
    assert Label.objects.filter(organization=cast.org_a).count() == 1
    assert list(AuditEvent.objects.filter(action__startswith="label.").values_list("action", flat=True).order_by("pk")) == [
        "label.created", "label.created", "label.deleted"]  # fmt: skip


def test_a_read_token_reads_labels_and_changes_none(cast: Cast) -> None:
    label = actions.label_create(actor=cast.carol_membership, name="Billing", personal=False)
    reader = ApiClient(token=token(cast.carol, "read"))
    assert [item["name"] for item in items(reader.get("/orgs/acme/labels"))] == ["Billing"]
    assert reader.post("/orgs/acme/labels", {"name": "New", "personal": True}).status_code == 403
    assert reader.patch(f"/orgs/acme/labels/{label.pk}", {"name": "Changed"}).status_code == 403
    assert reader.delete(f"/orgs/acme/labels/{label.pk}").status_code == 403
    assert list(Label.objects.values_list("name", flat=True)) == ["Billing"]


def test_label_colours_are_the_actions_colours() -> None:
    assert set(LabelColor.__args__) == set(actions.LABEL_COLORS)  # type: ignore[attr-defined]


# --- sending ---------------------------------------------------------------------------------------
def test_a_new_message_is_queued_from_the_callers_own_mailbox(cast: Cast, alice_mailbox: Mailbox, bob_mailbox: Mailbox,
                                                              charlie_mailbox: Mailbox) -> None:  # fmt: skip
    client = ApiClient(cast.alice)
    body = {"to": [{"name": "Dana", "address": "dana@customer.example"}], "subject": "Hello", "text": "Hi Dana"}
    response = client.post("/orgs/acme/messages", {**body, "mailbox_id": str(alice_mailbox.pk)})
    assert response.status_code == 202
    sent = response.json()
    assert (sent["status"], sent["kind"], sent["mailbox_id"], sent["conversation_id"]) == ("queued", "new", str(alice_mailbox.pk), None)
    assert client.get(f"/orgs/acme/outgoing/{sent['id']}").json() == sent
    assert ApiClient(cast.bob).get(f"/orgs/acme/outgoing/{sent['id']}").status_code == 404
    assert ApiClient(cast.charlie).get(f"/orgs/beta/outgoing/{sent['id']}").status_code == 404
    # Not from a teammate's mailbox, nor another organization's.
    assert client.post("/orgs/acme/messages", {**body, "mailbox_id": str(bob_mailbox.pk)}).status_code == 404
    assert client.post("/orgs/acme/messages", {**body, "mailbox_id": str(charlie_mailbox.pk)}).status_code == 404
    # Injection and nonsense are refused on their field, and nothing is queued.
    injected = client.post("/orgs/acme/messages", {**body, "mailbox_id": str(alice_mailbox.pk), "subject": "Hi\r\nBcc: x@evil.example"})
    assert (injected.status_code, injected.json()["errors"][0]["field"]) == (422, "subject")
    bad_address = {**body, "mailbox_id": str(alice_mailbox.pk), "to": [{"address": "dana@customer.example, eve@evil.example"}]}
    assert client.post("/orgs/acme/messages", bad_address).json()["errors"][0]["field"] == "to"
    assert (
        ApiClient(token=token(cast.alice, "read")).post("/orgs/acme/messages", {**body, "mailbox_id": str(alice_mailbox.pk)}).status_code
        == 403
    )
    assert ApiClient(cast.alice).get(f"/orgs/acme/outgoing/{sent['id']}").json()["attempts"] == 0
    from postroom.outbox.models import OutgoingMessage

    assert OutgoingMessage.objects.count() == 1


def test_a_reply_is_only_for_a_conversation_the_caller_can_answer(cast: Cast, alices: Message, bob_mailbox: Mailbox, support: Team) -> None:
    path = f"/orgs/acme/conversations/{alices.conversation_id}/messages"
    alice_mailbox = alices.copies.get().mailbox
    reply = ApiClient(cast.alice).post(path, {"mailbox_id": str(alice_mailbox.pk), "kind": "reply_all", "text": "On its way"})
    assert reply.status_code == 202
    assert (reply.json()["kind"], reply.json()["conversation_id"]) == ("reply_all", str(alices.conversation_id))
    # Bob cannot see it: 404, even from his own mailbox.
    assert ApiClient(cast.bob).post(path, {"mailbox_id": str(bob_mailbox.pk), "text": "Hi"}).status_code == 404
    assert ApiClient(cast.alice).post(path, {"mailbox_id": str(alice_mailbox.pk), "kind": "new"}).status_code == 422


# --- no secrets, no credentials --------------------------------------------------------------------
def test_answers_carry_no_mailbox_credentials(cast: Cast, alices: Message) -> None:
    client = ApiClient(cast.alice)
    answers = [
        client.get("/orgs/acme/conversations"),
        client.get(f"/orgs/acme/conversations/{alices.conversation_id}"),
        client.get(f"/orgs/acme/conversations/{alices.conversation_id}/messages"),
        client.post(f"/orgs/acme/conversations/{alices.conversation_id}/read"),
        client.post(f"/orgs/acme/conversations/{alices.conversation_id}/messages", {"mailbox_id": str(alices.copies.get().mailbox_id)}),
    ]
    for answer in answers:
        assert answer.status_code in {200, 202}
        assert STORED_PASSWORD not in answer.content.decode()


# --- queries do not grow with the data -------------------------------------------------------------
def count_queries(client: ApiClient, path: str, **query: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path, **query).status_code == 200
    return len(captured)


def conversations_with_everything(cast: Cast, mailbox: Mailbox, support: Team, count: int, start: int) -> None:
    urgent = Label.objects.filter(name="Urgent").first() or actions.label_create(actor=cast.alice_membership, name="Urgent", personal=False)
    for number in range(start, start + count):
        message = ingest(mailbox, number + 1, build_raw(message_id=f"<q{number}@customer.example>", subject=f"Q{number}",
                                                        attachments=(("a.txt", "text/plain", b"x"),)))  # fmt: skip
        actions.conversation_share(actor=cast.alice_membership, conversation=message.conversation, team=support)
        actions.conversation_assign(actor=cast.alice_membership, conversation=message.conversation, assignee=cast.bob_membership)
        actions.conversation_label(actor=cast.alice_membership, conversation=message.conversation, label=urgent)


def test_the_list_costs_the_same_queries_for_3_or_30_conversations(
    cast: Cast, alice_mailbox: Mailbox, support: Team, django_assert_num_queries: Any
) -> None:
    client = ApiClient(cast.bob)
    conversations_with_everything(cast, alice_mailbox, support, 3, 0)
    few = count_queries(client, "/orgs/acme/conversations", view="team", team_id=support.pk)
    conversations_with_everything(cast, alice_mailbox, support, 27, 3)
    with django_assert_num_queries(few):
        body = client.get("/orgs/acme/conversations", view="team", team_id=support.pk).json()
    assert len(body["items"]) == 30
    assert all(item["assignees"] and item["labels"] and item["has_attachments"] for item in body["items"])


def test_a_conversation_and_its_messages_cost_the_same_queries_for_3_or_30_messages(
    cast: Cast, alice_mailbox: Mailbox, support: Team, django_assert_num_queries: Any
) -> None:
    def add(start: int, count: int) -> Conversation:
        for number in range(start, start + count):
            raw = build_raw(message_id=f"<r{number}@customer.example>", in_reply_to="<r0@customer.example>" if number else None,
                            html=f"<p>Part {number} <img src='https://images.example/{number}.png'></p>",
                            attachments=(("a.txt", "text/plain", b"x"),))  # fmt: skip
            conversation = ingest(alice_mailbox, number + 1, raw).conversation
        actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=support)
        actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.carol_membership)
        actions.conversation_snooze(actor=cast.alice_membership, conversation=conversation, until=timezone.now() + timedelta(days=1))
        actions.conversation_unsnooze(actor=cast.alice_membership, conversation=conversation)
        return conversation

    conversation = add(0, 3)
    client = ApiClient(cast.alice)
    few_messages = count_queries(client, f"/orgs/acme/conversations/{conversation.pk}/messages")
    few_detail = count_queries(client, f"/orgs/acme/conversations/{conversation.pk}")
    add(3, 27)
    for number in range(12):  # a longer timeline too
        actions.conversation_follow(actor=cast.alice_membership, conversation=conversation, following=bool(number % 2))
        actions.conversation_close(actor=cast.alice_membership, conversation=conversation)
        actions.conversation_reopen(actor=cast.alice_membership, conversation=conversation)
    with django_assert_num_queries(few_messages):
        assert len(client.get(f"/orgs/acme/conversations/{conversation.pk}/messages").json()["items"]) == 30
    with django_assert_num_queries(few_detail):
        assert len(client.get(f"/orgs/acme/conversations/{conversation.pk}").json()["timeline"]) > 20
