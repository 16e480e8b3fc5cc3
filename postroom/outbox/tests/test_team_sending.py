"""Sending from a team mailbox (issue #4): a full member of the mailbox's team may choose it as
From, in the composer and through the API; an observer of the team, a teammate outside the team
and an outsider may not (404 from the API and the page, PermissionDenied from the action).

Alice's connected mailbox (real Dovecot and aiosmtpd) is the Support team's mailbox; Alice and
Bob are in Support, Carol (an admin) is not, Charlie is in another organization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from postroom.accounts.api_tokens import api_token_create
from postroom.accounts.models import User
from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.conversations import actions as conversation_actions
from postroom.conversations.models import Conversation
from postroom.mailboxes.actions import mailbox_team_set
from postroom.mailboxes.models import Mailbox
from postroom.orgs.actions import team_create, team_member_add
from postroom.orgs.models import Team
from postroom.outbox import actions, selectors
from postroom.outbox.models import OutgoingKind, OutgoingMessage
from postroom.outbox.tests.conftest import CUSTOMER_MESSAGE_ID
from postroom.outbox.tests.test_send import parsed
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db


@pytest.fixture
def support(cast: Cast, mailbox: Mailbox, conversation: Conversation) -> Team:
    team = team_create(actor=cast.alice_membership, name="Support")
    team_member_add(actor=cast.alice_membership, team=team, membership=cast.alice_membership)
    team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    mailbox_team_set(actor=cast.alice_membership, mailbox=mailbox, team=team)
    conversation_actions.conversation_share(actor=cast.alice_membership, conversation=conversation, team=team)
    return team


def api_client(user: User) -> ApiClient:
    return ApiClient(token=api_token_create(user=user, name="Script", scope="write", expires_at=None).token)


def test_a_team_member_replies_from_the_team_mailbox_through_the_api(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, support: Team, smtp_peer_requiring_auth: SmtpPeer,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    assert mailbox.owner_id == cast.alice_membership.pk  # Alice's connection, Bob's team
    assert list(selectors.sending_mailboxes(actor=cast.bob_membership)) == [mailbox]
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(cast.bob).post(
            f"/orgs/acme/conversations/{conversation.pk}/messages", {"mailbox_id": str(mailbox.pk), "text": "Ist unterwegs.\n"}
        )
    assert response.status_code == 202, response.json()
    assert response.json()["mailbox_id"] == str(mailbox.pk)
    assert run_due() == 1
    [received] = smtp_peer_requiring_auth.messages
    sent = parsed(received.content)
    assert sent["From"].addresses[0].addr_spec == mailbox.email_address
    assert sent["In-Reply-To"] == CUSTOMER_MESSAGE_ID
    assert OutgoingMessage.objects.get().author_id == cast.bob_membership.pk


def test_a_team_member_chooses_the_team_mailbox_in_the_composer(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, support: Team, client_as: Any,
    smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    bob = client_as(cast.bob)
    page = bob.get(reverse("outbox:reply", args=["acme", conversation.pk]) + "?kind=reply")
    assert page.status_code == 200
    # Offered, and chosen already: it received the conversation.
    assert page.context["form"]["mailbox"].value() == mailbox.pk
    assert f'value="{mailbox.pk}"' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = bob.post(
            reverse("outbox:new", args=["acme"]), {"mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Hi", "text": "x"}
        )
    assert response.status_code == 302
    run_due()
    [received] = smtp_peer_requiring_auth.messages
    assert parsed(received.content)["From"].addresses[0].addr_spec == mailbox.email_address


@pytest.mark.parametrize("who", ["carol", "charlie", "observer"])
def test_others_cannot_send_from_the_team_mailbox(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, support: Team, client_as: Any, who: str,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    if who == "observer":  # Carol watches Support: she reads its conversations but does not speak for it
        team_member_add(actor=cast.alice_membership, team=support, membership=cast.carol_membership, observer=True)
    user, membership, slug = {
        "carol": (cast.carol, cast.carol_membership, "acme"),  # an admin of the organization, not in the team
        "observer": (cast.carol, cast.carol_membership, "acme"),
        "charlie": (cast.charlie, cast.charlie_membership, "beta"),  # another organization
    }[who]  # fmt: skip
    assert mailbox not in selectors.sending_mailboxes(actor=membership)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(user).post(
            f"/orgs/{slug}/messages", {"mailbox_id": str(mailbox.pk), "to": [{"address": "dana@customer.example"}], "text": "x"}
        )
    assert response.status_code == 404
    page = client_as(user).post(reverse("outbox:new", args=[slug]), {"mailbox": str(mailbox.pk), "to": "dana@customer.example", "text": "x"})
    assert page.status_code == 200
    assert "mailbox" in page.context["form"].errors
    with pytest.raises(PermissionDenied):
        actions.outgoing_create(
            actor=membership, mailbox=mailbox, kind=OutgoingKind.NEW, to=[("", "dana@customer.example")], subject="x", text="x"
        )
    with pytest.raises(PermissionDenied):
        actions.draft_save(actor=membership, draft=None, kind=OutgoingKind.NEW, conversation=None, mailbox=mailbox, typed=actions.Typed())
    assert not OutgoingMessage.objects.exists()


def test_leaving_the_team_ends_sending_from_its_mailbox(cast: Cast, mailbox: Mailbox, support: Team) -> None:
    from postroom.orgs.actions import team_member_remove

    assert mailbox in selectors.sending_mailboxes(actor=cast.bob_membership)
    team_member_remove(actor=cast.alice_membership, team=support, membership=cast.bob_membership)
    assert mailbox not in selectors.sending_mailboxes(actor=cast.bob_membership)
    with pytest.raises(PermissionDenied):
        actions.outgoing_create(
            actor=cast.bob_membership, mailbox=mailbox, kind=OutgoingKind.NEW, to=[("", "dana@customer.example")], subject="x", text="x"
        )


REPLY: dict[str, Any] = {"to": [("Kundin", "kundin@example.org")], "subject": "Re: Bestellung"}


def test_r38_mail_queued_before_leaving_the_team_is_not_sent_after(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, support: Team, smtp_peer_requiring_auth: SmtpPeer,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    """The right to send from the team mailbox is checked again when the message leaves: a retry
    or a send-later can run long after it was queued."""
    from postroom.orgs.actions import membership_remove, team_member_remove
    from postroom.outbox.models import OutgoingStatus

    with django_capture_on_commit_callbacks(execute=True):
        bobs = actions.outgoing_create(
            actor=cast.bob_membership, mailbox=mailbox, kind=OutgoingKind.REPLY, conversation=conversation, **REPLY, text="Ist unterwegs.\n"
        )
        alices = actions.outgoing_create(
            actor=cast.alice_membership, mailbox=mailbox, kind=OutgoingKind.REPLY, conversation=conversation, **REPLY, text="Auch von mir.\n"
        )
    team_member_remove(actor=cast.alice_membership, team=support, membership=cast.bob_membership)
    assert run_due() == 2

    bobs.refresh_from_db()
    alices.refresh_from_db()
    assert bobs.status == OutgoingStatus.FAILED_PERMANENT
    assert bobs.last_error == "Not sent: its author may no longer send from this mailbox."
    assert alices.status == OutgoingStatus.SENT
    assert [parsed(item.content)["From"].addresses[0].addr_spec for item in smtp_peer_requiring_auth.messages] == [mailbox.email_address]
    assert "Auch von mir." in smtp_peer_requiring_auth.messages[0].content.decode()

    # Removed from the organization altogether (the author becomes empty): still not sent.
    team_member_add(actor=cast.alice_membership, team=support, membership=cast.bob_membership)
    with django_capture_on_commit_callbacks(execute=True):
        again = actions.outgoing_create(
            actor=cast.bob_membership, mailbox=mailbox, kind=OutgoingKind.REPLY, conversation=conversation, **REPLY, text="Noch was.\n"
        )
    membership_remove(actor=cast.alice_membership, membership=cast.bob_membership)
    assert run_due() == 1
    again.refresh_from_db()
    assert again.author_id is None
    assert again.status == OutgoingStatus.FAILED_PERMANENT
    assert again.last_error == "Not sent: its author is no longer a member of the organization."
    assert len(smtp_peer_requiring_auth.messages) == 1
