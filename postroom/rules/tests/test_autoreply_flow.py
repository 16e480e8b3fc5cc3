"""The auto-reply action end to end: a rule answers incoming mail with a response, through the
outbox, to a real SMTP peer (aiosmtpd), with the Sent copy on a real Dovecot (R38)."""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django_tasks.backends.dummy import DummyBackend

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Message, TimelineEvent
from postroom.conversations.tests.conftest import build_raw
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.outbox.models import OutgoingMessage
from postroom.outbox.tests.conftest import mailbox, run_due  # noqa: F401 (fixtures)
from postroom.responses import actions as response_actions
from postroom.responses.models import Response, Scope
from postroom.rules import actions
from postroom.rules.models import AutoReplySent, Rule, RuleRun, RunOutcome
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db

BODY = "<p>Hello {{ recipient_first_name }}, thank you for writing to {{ organization_name }}. We answer within a day.</p>"
PDF = b"%PDF-1.4 opening hours\n" * 20


def parsed(content: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)
    return message


class Inbox:
    def __init__(self, connected: Mailbox, capture: Any, drain: Callable[[], int]) -> None:
        self.mailbox = connected
        self.folder = Folder.objects.create(mailbox=connected, name="INBOX", role=FolderRole.INBOX, uidvalidity=1)
        self.capture = capture
        self.run_due = drain
        self.uid = 0

    def receive(self, *, headers: dict[str, str] | None = None, **fields: Any) -> Message:
        """Store one incoming message (rules run in that transaction), then let the worker send."""
        self.uid += 1
        fields.setdefault("message_id", f"<m{self.uid}@customer.example>")
        fields.setdefault("subject", f"Question number {self.uid}")
        fields.setdefault("to", self.mailbox.email_address)
        raw = build_raw(**fields)
        prefix = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items()).encode()
        with self.capture(execute=True):
            copy = message_ingest(mailbox=self.mailbox, folder=self.folder, uidvalidity=1, uid=self.uid, raw=prefix + raw)
        self.run_due()
        return copy.message


@pytest.fixture
def inbox(mailbox: Mailbox, django_capture_on_commit_callbacks: Any, run_due: Callable[[], int]) -> Inbox:  # noqa: F811
    return Inbox(mailbox, django_capture_on_commit_callbacks, run_due)


def make_response(cast: Cast, *, scope: str = Scope.PERSONAL, team: Team | None = None, body: str = BODY) -> Response:
    actor = cast.alice_membership
    response = response_actions.response_create(
        actor=actor, scope=scope, team=team, content=response_actions.ResponseContent(name="We got it", body=body)
    )
    response_actions.response_attachments_add(
        actor=actor, response=response,
        files=[response_actions.NewAttachment(filename="Opening hours.pdf", content_type="application/pdf", content=PDF)],
    )  # fmt: skip
    return response


def auto_reply_rule(cast: Cast, response: Response, actor: Membership | None = None, **fields: Any) -> Rule:
    return actions.rule_create(
        actor=actor or cast.alice_membership, organization=False, name="Acknowledge", trigger="incoming", conditions=[],
        actions=[{"kind": "auto_reply", "response_id": str(response.pk)}], **fields,
    )  # fmt: skip


def test_r38_auto_reply_arrives_once_threaded_from_the_receiving_mailbox_with_the_response(
    cast: Cast, inbox: Inbox, smtp_peer_requiring_auth: SmtpPeer
) -> None:
    rule = auto_reply_rule(cast, make_response(cast))
    first = inbox.receive(sender="Dana Customer <dana@customer.example>", references="<root@customer.example>")

    [received] = smtp_peer_requiring_auth.messages
    assert received.recipients == ("dana@customer.example",)
    assert received.mail_from == inbox.mailbox.email_address
    reply = parsed(received.content)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<m1@customer.example>"
    assert reply["References"].split() == ["<root@customer.example>", "<m1@customer.example>"]
    assert reply["Subject"] == "Re: Question number 1"
    text = reply.get_body(preferencelist=("plain",))
    assert text is not None
    assert "Hello Dana, thank you for writing to" in text.get_content()
    [attachment] = list(reply.iter_attachments())
    assert attachment.get_filename() == "Opening hours.pdf"
    assert attachment.get_content() == PDF
    # The Sent copy threads into the conversation answered; the timeline says the rule replied.
    outgoing = OutgoingMessage.objects.get()
    assert outgoing.message is not None
    assert outgoing.message.conversation_id == first.conversation_id
    [event] = TimelineEvent.objects.filter(conversation=first.conversation, kind="rule_applied")
    assert event.details["changes"] == [{"kind": "auto_reply", "outgoing_id": str(outgoing.pk)}]
    assert "dana" not in str(AutoReplySent.objects.values_list("sender_index", flat=True))  # a blind index only

    # The same sender again the same day (another address case, another thread): no second reply.
    inbox.receive(sender="Dana <DANA@customer.example>", subject="Another question")
    assert len(smtp_peer_requiring_auth.messages) == 1
    assert RuleRun.objects.filter(rule=rule).count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Precedence": "bulk"},
        {"Precedence": "list"},
        {"Precedence": "junk"},
        {"List-Id": "<news.customer.example>"},
        {"Auto-Submitted": "auto-replied"},
        {"Auto-Submitted": "auto-generated"},
    ],
    ids=["bulk", "list", "junk", "list-id", "auto-replied", "auto-generated"],
)
def test_r38_bulk_list_and_automatic_mail_gets_no_auto_reply(
    cast: Cast, inbox: Inbox, smtp_peer_requiring_auth: SmtpPeer, headers: dict[str, str]
) -> None:
    auto_reply_rule(cast, make_response(cast))
    inbox.receive(sender="Dana Customer <dana@customer.example>", headers=headers)
    assert smtp_peer_requiring_auth.messages == []
    assert not AutoReplySent.objects.exists()  # a refused message does not use up the day's reply


@pytest.mark.parametrize("sender", ["noreply@customer.example", "MAILER-DAEMON@customer.example", "bob@acme.test"])
def test_r38_noreply_senders_and_our_own_addresses_get_no_auto_reply(
    cast: Cast, inbox: Inbox, smtp_peer_requiring_auth: SmtpPeer, sender: str
) -> None:
    from postroom.mailboxes.tests.factories import make_mailbox

    make_mailbox(cast.bob_membership, address="bob@acme.test")  # another mailbox of the organization
    auto_reply_rule(cast, make_response(cast))
    inbox.receive(sender=sender)
    inbox.receive(sender=inbox.mailbox.email_address)  # the receiving mailbox itself
    assert smtp_peer_requiring_auth.messages == []


def test_r38_two_postroom_responders_do_not_loop(cast: Cast, inbox: Inbox, smtp_peer_requiring_auth: SmtpPeer) -> None:
    """Our reply, delivered to another responder that follows RFC 3834 (ours), is not answered."""
    auto_reply_rule(cast, make_response(cast))
    inbox.receive(sender="Dana Customer <dana@customer.example>")
    [received] = smtp_peer_requiring_auth.messages
    # The reply comes back as incoming mail (from another address, so the day's limit is no help).
    echoed = received.content.replace(inbox.mailbox.email_address.encode(), b"responder@other.example")
    inbox.uid += 1
    with inbox.capture(execute=True):
        message_ingest(mailbox=inbox.mailbox, folder=inbox.folder, uidvalidity=1, uid=inbox.uid, raw=echoed)
    inbox.run_due()
    assert len(smtp_peer_requiring_auth.messages) == 1


def test_r38_a_response_the_owner_may_no_longer_use_sends_nothing_and_flags_the_rule(
    cast: Cast, inbox: Inbox, smtp_peer_requiring_auth: SmtpPeer
) -> None:
    bob = cast.bob_membership
    Mailbox.objects.filter(pk=inbox.mailbox.pk).update(owner=bob)  # Bob's mailbox now, Bob's rule
    team = Team.objects.create(organization=cast.org_a, name="Front desk")
    TeamMembership.objects.create(team=team, membership=bob)
    rule = auto_reply_rule(cast, make_response(cast, scope=Scope.TEAM, team=team), actor=bob)
    TeamMembership.objects.filter(team=team, membership=bob).delete()  # Bob left the team

    inbox.receive(sender="Dana Customer <dana@customer.example>")
    assert smtp_peer_requiring_auth.messages == []
    rule.refresh_from_db()
    assert "response" in rule.flagged_reason
    assert RuleRun.objects.get(rule=rule).outcome == RunOutcome.REFUSED


def test_auto_reply_needs_a_visible_response_without_inputs_and_the_incoming_trigger(cast: Cast, queue: DummyBackend) -> None:
    with_input = make_response(cast, body="<p>Your order {{ input:Order number }}</p>")
    with pytest.raises(ValidationError, match="inputs"):
        auto_reply_rule(cast, with_input)
    bobs = response_actions.response_create(
        actor=cast.bob_membership, scope=Scope.PERSONAL, content=response_actions.ResponseContent(name="Bob's", body="<p>Hi</p>")
    )
    with pytest.raises(ValidationError, match="response"):
        auto_reply_rule(cast, bobs)  # a teammate's personal response
    with pytest.raises(ValidationError, match="arrives"):
        actions.rule_create(actor=cast.alice_membership, organization=False, name="x", trigger="closed", conditions=[],
                            actions=[{"kind": "auto_reply", "response_id": str(make_response(cast).pk)}])  # fmt: skip


def test_an_organization_rule_replies_from_the_team_mailbox_with_an_organization_response_only(
    place: Any, queue: DummyBackend, django_capture_on_commit_callbacks: Any
) -> None:
    cast = place.cast
    carol = cast.carol_membership  # an admin
    organization_response = response_actions.response_create(
        actor=carol, scope=Scope.ORGANIZATION, content=response_actions.ResponseContent(name="Ack", body="<p>Hi {{ recipient_first_name }}</p>")
    )
    carols_own = response_actions.response_create(
        actor=carol, scope=Scope.PERSONAL, content=response_actions.ResponseContent(name="Mine", body="<p>Hi</p>")
    )
    with pytest.raises(ValidationError, match="organization or team response"):
        actions.rule_create(actor=carol, organization=True, name="Ack", trigger="incoming", conditions=[],
                            actions=[{"kind": "auto_reply", "response_id": str(carols_own.pk)}])  # fmt: skip
    actions.rule_create(actor=carol, organization=True, name="Ack", trigger="incoming", conditions=[],
                        actions=[{"kind": "auto_reply", "response_id": str(organization_response.pk)}])  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        message = place.deliver(place.support_mailbox, to="support@acme.test", sender="Dana Customer <dana@customer.example>")
    [outgoing] = OutgoingMessage.objects.all()
    assert outgoing.mailbox == place.support_mailbox
    assert outgoing.author is None  # the organization sends it
    assert outgoing.conversation_id == message.conversation_id
    envelope = outgoing.envelope or {}
    assert envelope["recipients"] == ["dana@customer.example"]
    assert "Hi Dana" in envelope["text"]
    assert [list(result.args) for result in queue.results] == [[str(outgoing.pk)]]  # the send task, after the commit
    # A personal mailbox's mail is not the organization rule's business.
    place.deliver(place.alice_mailbox, sender="Eve <eve@elsewhere.example>")
    assert OutgoingMessage.objects.count() == 1
