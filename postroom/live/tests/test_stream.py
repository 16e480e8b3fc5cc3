"""The event stream end to end through the ASGI application, with the cast (SECURITY.md R19).

Ordering stands in for time: a stream delivers events in the order they were committed, so
"Bob never receives the event about Alice's private conversation" is checked by committing that
event first and an event Bob may see second, then asserting that the first thing Bob receives
is the second one. No assertion waits for something not to happen.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from postroom.accounts.models import User, new_security_stamp
from postroom.accounts.sessions import other_sessions_end
from postroom.conftest import Cast
from postroom.conversations import actions
from postroom.conversations.models import Label
from postroom.live import hub as hubs
from postroom.live.tests.asgi import ServerEvent, in_thread, open_stream, session_cookie
from postroom.live.tests.conftest import deliver, run
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)

ACME = "/o/acme/events/"
BETA = "/o/beta/events/"


def payload(event: ServerEvent) -> dict[str, Any]:
    return dict(json.loads(event.data))


def test_r19_a_member_hears_only_of_conversations_they_can_see(cast: Cast, alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob)
        assert stream.status == 200
        assert stream.response_headers["content-type"].startswith("text/event-stream")
        assert stream.response_headers["cache-control"] == "no-store"
        await stream.until("ready")
        private = await in_thread(lambda: deliver(alice_mailbox, subject="Alice's secret canary"))
        own = await in_thread(lambda: deliver(bob_mailbox, subject="Bob's own"))
        assert payload(await stream.until("conversation")) == {"conversation": str(own.pk), "kind": "message_added"}

        await in_thread(lambda: actions.conversation_share(actor=cast.alice_membership, conversation=private, member=cast.bob_membership))
        assert payload(await stream.until("conversation")) == {"conversation": str(private.pk), "kind": "shared"}
        await stream.close()
        assert "canary" not in stream.body
        assert "secret" not in stream.body

    run(scenario)


def test_r19_another_organization_never_hears_of_acme(cast: Cast, alice_mailbox: Mailbox, charlie_mailbox: Mailbox) -> None:
    charlie = session_cookie(cast.charlie)

    async def scenario() -> None:
        stream = await open_stream(BETA, cookie=charlie)
        await stream.until("ready")
        acme = await in_thread(lambda: deliver(alice_mailbox))
        await in_thread(lambda: actions.conversation_share(actor=cast.alice_membership, conversation=acme, organization=True))
        await in_thread(lambda: actions.conversation_close(actor=cast.alice_membership, conversation=acme))
        beta = await in_thread(lambda: deliver(charlie_mailbox))
        assert payload(await stream.until("conversation")) == {"conversation": str(beta.pk), "kind": "message_added"}
        await stream.close()
        assert str(acme.pk) not in stream.body

    run(scenario)


def test_r19_an_outsider_gets_404_and_a_stranger_is_sent_to_sign_in(cast: Cast) -> None:
    charlie = session_cookie(cast.charlie)

    async def scenario() -> None:
        outsider = await open_stream(ACME, cookie=charlie)
        assert outsider.status == 404
        await outsider.text()
        missing = await open_stream("/o/no-such-org/events/", cookie=charlie)
        assert missing.status == 404
        await missing.text()
        stranger = await open_stream(ACME)
        assert stranger.status == 302
        assert stranger.response_headers["location"].startswith(reverse("account_login"))
        await stranger.text()

    run(scenario)


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:8000.evil.example"},
        {"sec_fetch_site": "cross-site"},
        {"sec_fetch_site": "same-site"},
    ],
)
def test_r19_a_foreign_origin_is_refused(cast: Cast, headers: dict[str, str]) -> None:
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        refused = await open_stream(ACME, cookie=bob, **headers)
        assert refused.status == 403
        assert "event:" not in await refused.text()

    run(scenario)


def test_r19_the_sites_own_origin_is_accepted(cast: Cast, settings: Any) -> None:
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob, origin=settings.PUBLIC_URL, sec_fetch_site="same-origin")
        assert stream.status == 200
        await stream.until("ready")
        await stream.close()

    run(scenario)


def test_r19_logging_out_ends_the_stream(cast: Cast, bob_mailbox: Mailbox) -> None:
    browser = Client()
    browser.force_login(cast.bob, backend="allauth.account.auth_backends.AuthenticationBackend")
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=cookie)
        await stream.until("ready")
        assert (await in_thread(lambda: browser.post(reverse("account_logout")))).status_code == 302
        await stream.until("end")
        assert await stream.next_event() is None  # and the server closes it

    run(scenario)


def test_r19_a_credential_change_elsewhere_ends_the_stream(cast: Cast) -> None:
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob)
        await stream.until("ready")
        # A password or second-factor change from another device rotates the security stamp.
        await in_thread(lambda: other_sessions_end(user=User.objects.get(pk=cast.bob.pk), request=None))
        await stream.until("end")

    run(scenario)


def test_r19_removal_from_the_organization_ends_the_stream(cast: Cast) -> None:
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob)
        await stream.until("ready")
        await in_thread(lambda: Membership.objects.get(pk=cast.bob_membership.pk).delete())
        await stream.until("end")

    run(scenario)


def test_r19_the_periodic_check_ends_a_stream_whose_session_changed_silently(
    cast: Cast, alice_mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes made without signals (a bulk update, another tool) are caught by the periodic check."""
    monkeypatch.setattr(hubs, "RECHECK_SECONDS", 0.05)
    bob, alice = session_cookie(cast.bob), session_cookie(cast.alice)

    async def scenario() -> None:
        bobs = await open_stream(ACME, cookie=bob)
        alices = await open_stream(ACME, cookie=alice)
        await bobs.until("ready")
        await alices.until("ready")
        await in_thread(lambda: User.objects.filter(pk=cast.bob.pk).update(security_stamp=new_security_stamp()))
        await bobs.until("end")
        # Alice's stream is untouched: it still delivers.
        conversation = await in_thread(lambda: deliver(alice_mailbox))
        assert payload(await alices.until("conversation"))["conversation"] == str(conversation.pk)
        await alices.close()

    run(scenario)


def test_a_reconnecting_page_gets_what_it_missed(cast: Cast, alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    bob, alice = session_cookie(cast.bob), session_cookie(cast.alice)

    async def scenario() -> None:
        alices = await open_stream(ACME, cookie=alice)  # keeps the hub running while Bob is away
        stream = await open_stream(ACME, cookie=bob)
        await alices.until("ready")
        await stream.until("ready")
        first = await in_thread(lambda: deliver(bob_mailbox))
        seen = await stream.until("conversation")
        assert payload(seen)["conversation"] == str(first.pk)
        await stream.close()

        missed = await in_thread(lambda: deliver(bob_mailbox))
        marker = await in_thread(lambda: deliver(alice_mailbox))
        # Once Alice hears of the later marker, the hub has gone past what Bob missed.
        assert payload(await alices.until("conversation"))["conversation"] == str(marker.pk)
        again = await open_stream(ACME, cookie=bob, last_event_id=seen.id or "")
        replayed = await again.next_event()
        assert replayed is not None
        assert (replayed.event, payload(replayed)) == ("conversation", {"conversation": str(missed.pk), "kind": "message_added"})
        following = await again.next_event()
        assert following is not None
        assert following.event == "ready", (following, str(first.pk), str(missed.pk), str(marker.pk))
        await again.close()
        await alices.close()

    run(scenario)


def test_a_page_hears_of_what_happened_between_its_rendering_and_its_stream(cast: Cast, bob_mailbox: Mailbox) -> None:
    browser = Client()
    browser.force_login(cast.bob, backend="allauth.account.auth_backends.AuthenticationBackend")
    page = browser.get(reverse("conversations:list", args=["acme"])).content.decode()
    found = re.search(r'data-live-events="([^"]+)" data-live-after="([^"]+)"', page)
    assert found is not None
    url, after = found.groups()
    assert url == ACME
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    arrived = deliver(bob_mailbox)  # after the page was rendered, before its stream opens

    async def scenario() -> None:
        stream = await open_stream(f"{url}?after={after}", cookie=cookie)
        replayed = await stream.next_event()
        assert replayed is not None
        assert (replayed.event, payload(replayed)) == ("conversation", {"conversation": str(arrived.pk), "kind": "message_added"})
        await stream.until("ready")
        await stream.close()

    run(scenario)


@pytest.mark.parametrize("last_event_id", ["garbage", "A" * 48])
def test_an_unknown_position_asks_the_page_to_resync(cast: Cast, last_event_id: str) -> None:
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob, last_event_id=last_event_id)
        assert [(await stream.next_event()).event, (await stream.next_event()).event] == ["resync", "ready"]  # type: ignore[union-attr]
        await stream.close()

    run(scenario)


def test_r19_a_cursor_is_opaque_and_bound_to_its_member(cast: Cast, bob_mailbox: Mailbox) -> None:
    """Event ids reveal nothing about activity elsewhere, and Alice cannot replay Bob's."""
    bob, alice = session_cookie(cast.bob), session_cookie(cast.alice)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob)
        ready = await stream.until("ready")
        await stream.close()
        assert ready.id
        assert not ready.id.isdigit()
        stolen = await open_stream(ACME, cookie=alice, last_event_id=ready.id)
        assert (await stolen.next_event()).event == "resync"  # type: ignore[union-attr]
        await stolen.close()

    run(scenario)


def test_r19_streams_per_user_are_limited(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubs, "MAX_STREAMS_PER_USER", 2)
    bob, alice = session_cookie(cast.bob), session_cookie(cast.alice)

    async def scenario() -> None:
        streams = [await open_stream(ACME, cookie=bob) for _ in range(2)]
        for stream in streams:
            await stream.until("ready")
        refused = await open_stream(ACME, cookie=bob)
        assert refused.status == 429
        await refused.text()
        other = await open_stream(ACME, cookie=alice)  # another user is not affected
        await other.until("ready")
        await streams[0].close()
        again = await open_stream(ACME, cookie=bob)
        await again.until("ready")
        for stream in (streams[1], other, again):
            await stream.close()

    run(scenario)


def test_r19_a_personal_label_is_heard_by_its_owner_alone(cast: Cast, alice_mailbox: Mailbox) -> None:
    bob, alice = session_cookie(cast.bob), session_cookie(cast.alice)
    conversation = deliver(alice_mailbox)
    actions.conversation_share(actor=cast.alice_membership, conversation=conversation, member=cast.bob_membership)
    personal = Label.objects.create(organization=cast.org_a, owner=cast.alice_membership, name="Mine")
    team_label = Label.objects.create(organization=cast.org_a, name="Urgent")

    async def scenario() -> None:
        bobs, alices = await open_stream(ACME, cookie=bob), await open_stream(ACME, cookie=alice)
        await bobs.until("ready")
        await alices.until("ready")
        await in_thread(lambda: actions.conversation_label(actor=cast.alice_membership, conversation=conversation, label=personal))
        await in_thread(lambda: actions.conversation_label(actor=cast.alice_membership, conversation=conversation, label=team_label))
        assert [payload(await alices.until("conversation"))["kind"] for _ in range(2)] == ["labelled", "labelled"]
        await alices.close()
        # Bob's first event is the organization label's: the personal one never reached him.
        await in_thread(
            lambda: actions.conversation_assign(actor=cast.alice_membership, conversation=conversation, assignee=cast.bob_membership)
        )
        kinds = [payload(await bobs.until("conversation"))["kind"] for _ in range(2)]
        assert kinds == ["labelled", "assigned"]
        await bobs.close()

    run(scenario)


def test_r19_an_event_for_chosen_members_reaches_only_them(cast: Cast, alice_mailbox: Mailbox) -> None:
    """``details["audience"]`` (notifications use it) narrows delivery to those members."""
    from postroom.conversations.models import Conversation
    from postroom.conversations.signals import conversation_event

    bob, carol = session_cookie(cast.bob), session_cookie(cast.carol)
    for_carol, for_bob = deliver(alice_mailbox), deliver(alice_mailbox)
    for conversation in (for_carol, for_bob):
        actions.conversation_share(actor=cast.alice_membership, conversation=conversation, organization=True)

    def notify(conversation: Conversation, membership: Membership) -> None:
        conversation_event.send(
            sender=Conversation, conversation_id=conversation.pk, organization_id=cast.org_a.pk, kind="notification",
            actor_id=None, details={"audience": [membership.pk]},
        )  # fmt: skip

    async def scenario() -> None:
        bobs, carols = await open_stream(ACME, cookie=bob), await open_stream(ACME, cookie=carol)
        await bobs.until("ready")
        await carols.until("ready")
        await in_thread(lambda: notify(for_carol, cast.carol_membership))
        await in_thread(lambda: notify(for_bob, cast.bob_membership))
        # Carol's was published first: had it reached Bob, it would be his first event.
        assert payload(await bobs.until("conversation")) == {"conversation": str(for_bob.pk), "kind": "notification"}
        assert payload(await carols.until("conversation")) == {"conversation": str(for_carol.pk), "kind": "notification"}
        await bobs.close()
        await carols.close()

    run(scenario)


def test_a_stream_without_its_bus_asks_the_page_to_come_back_later(cast: Cast, settings: Any) -> None:
    """Redis down: the page is told to retry in a while, and nothing else breaks."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.LIVE_BUS, settings.REDIS_URL = "redis", f"redis://127.0.0.1:{port}/0"
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob)
        assert stream.status == 200
        assert await stream.next_event() is None
        assert stream.body == "retry: 15000\n\n"

    run(scenario)


def test_a_quiet_stream_sends_heartbeats(cast: Cast, bob_mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from postroom.live import views

    monkeypatch.setattr(views, "HEARTBEAT_SECONDS", 0.05)
    bob = session_cookie(cast.bob)

    async def scenario() -> None:
        stream = await open_stream(ACME, cookie=bob)
        await stream.until("ready")
        await stream.comment(": keep-alive")
        await stream.comment(": keep-alive")
        # and the stream still delivers
        conversation = await in_thread(lambda: deliver(bob_mailbox))
        assert payload(await stream.until("conversation"))["conversation"] == str(conversation.pk)
        await stream.close()

    run(scenario)
