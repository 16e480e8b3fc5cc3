"""Sending through a real SMTP peer (aiosmtpd) with the Sent copy on a real Dovecot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
import time_machine
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_tasks.backends.dummy import DummyBackend

from postroom.conftest import Cast
from postroom.conversations.models import Conversation, Direction, Message, MessageCopy
from postroom.core.blobs import blob_get
from postroom.mailboxes.models import Mailbox
from postroom.mime.build import OutgoingAttachment
from postroom.outbox import actions, tasks
from postroom.outbox.models import OutgoingKind, OutgoingMessage, OutgoingStatus, SentCopy
from postroom.outbox.tests.conftest import CUSTOMER_MESSAGE_ID, THREAD_ROOT_ID
from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer, _Handler

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4 invoice 4711\n" * 50


class _ScriptedHandler(_Handler):
    """Answers the first DATA commands with the given replies, then accepts as usual.
    (The shared peer has no such switch; a handler subclass keeps this test-only.)"""

    def __init__(self, peer: SmtpPeer, replies: list[str]) -> None:
        super().__init__(peer)
        self.replies = replies

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        return await super().handle_DATA(server, session, envelope)


def script(peer: SmtpPeer, *replies: str) -> None:
    peer._controller.handler = _ScriptedHandler(peer, list(replies))


def parsed(content: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)
    return message


def create(mailbox: Mailbox, capture: Any, **fields: Any) -> OutgoingMessage:
    fields.setdefault("kind", OutgoingKind.NEW)
    fields.setdefault("subject", "Hello")
    fields.setdefault("text", "Hello there.\n")
    with capture(execute=True):
        return actions.outgoing_create(actor=mailbox.owner, mailbox=mailbox, **fields)


def sent_folder_ids(dovecot: Dovecot, user: MailUser) -> list[str]:
    output = dovecot.doveadm("fetch", "-u", user.name, "hdr.message-id", "mailbox", "Sent")
    return [line.split(":", 1)[1].strip() for line in output.splitlines() if line.lower().startswith("hdr.message-id:")]


def test_reply_arrives_threaded_with_our_message_id_alternative_attachment_and_encoded_headers(
    mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer, dovecot: Dovecot, mail_user: MailUser,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    outgoing = create(
        mailbox, django_capture_on_commit_callbacks, kind=OutgoingKind.REPLY, conversation=conversation,
        to=[("Dana Customer", "dana@customer.example")], subject="Re: Bestellung für Müller",
        text="Grüße, sie ist unterwegs.\n", html="<p>Grüße, <b>sie ist unterwegs</b>.</p>",
        attachments=[OutgoingAttachment(filename="Rechnung März.pdf", content_type="application/pdf", content=PDF)],
    )  # fmt: skip
    assert run_due() == 1

    [received] = smtp_peer_requiring_auth.messages
    assert received.authenticated_as == mail_user.name
    assert received.mail_from == mail_user.address
    assert received.recipients == ("dana@customer.example",)
    message = parsed(received.content)
    assert message["In-Reply-To"] == CUSTOMER_MESSAGE_ID
    assert message["References"].split() == [THREAD_ROOT_ID, CUSTOMER_MESSAGE_ID]
    outgoing.refresh_from_db()
    envelope = outgoing.envelope or {}
    assert message["Message-ID"] == envelope["message_id"]
    assert message["Message-ID"].endswith("@postroom.test>")
    # Non-ASCII header text travels as RFC 2047 encoded words; the parsed value reads back.
    headers = received.content.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii()
    assert b"=?utf-8?" in next(line for line in headers.split(b"\r\n") if line.startswith(b"Subject:"))
    assert message["Subject"] == "Re: Bestellung für Müller"
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert body is not None
    assert body.get_content().splitlines() == ["Grüße, sie ist unterwegs."]
    assert html is not None
    assert "<b>sie ist unterwegs</b>" in html.get_content()
    assert [part.get_content_type() for part in message.walk()][:4] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "Rechnung März.pdf"
    assert attachment.get_content() == PDF

    assert outgoing.status == OutgoingStatus.SENT
    assert outgoing.sent_copy == SentCopy.STORED
    assert sent_folder_ids(dovecot, mail_user) == [envelope["message_id"]]
    # The Sent copy is the conversation's newest message at once, as the sync engine will see it.
    assert outgoing.message is not None
    assert outgoing.message.conversation_id == conversation.pk
    assert outgoing.message.direction == Direction.OUTBOUND
    copy = MessageCopy.objects.get(message=outgoing.message)
    assert copy.folder.name == "Sent"
    assert copy.seen
    conversation.refresh_from_db()
    assert conversation.message_count == 2


def test_r33_envelope_is_exactly_to_cc_and_bcc_and_bcc_is_in_no_header(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int], django_capture_on_commit_callbacks: Any
) -> None:
    create(
        mailbox, django_capture_on_commit_callbacks,
        to=[("Dana", "dana@customer.example")], cc=[("Erin", "erin@customer.example"), ("Dana again", "DANA@customer.example")],
        bcc=[("Hidden Boss", "boss@acme.test")],
    )  # fmt: skip
    run_due()
    [received] = smtp_peer_requiring_auth.messages
    assert sorted(received.recipients) == ["boss@acme.test", "dana@customer.example", "erin@customer.example"]
    assert b"boss@acme.test" not in received.content
    assert parsed(received.content)["Bcc"] is None
    assert b"rcpt to:<boss@acme.test>" in smtp_peer_requiring_auth.transcript.lower()


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"subject": "Invoice\r\nBcc: evil@attacker.example"}, "subject"),
        ({"subject": "Invoice\rBcc: evil@attacker.example"}, "subject"),
        ({"to": [("Dana\r\nBcc: evil@attacker.example", "dana@customer.example")]}, "to"),
        ({"to": [("Dana", "dana@customer.example>\r\nRCPT TO:<evil@attacker.example")]}, "to"),
        ({"to": [("Dana", "dana@customer.example")], "cc": [("Erin", "erin@customer.example\n")]}, "cc"),
    ],
)
def test_r33_crlf_in_any_field_is_refused_on_that_field(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, django_capture_on_commit_callbacks: Any, fields: dict[str, Any], field_name: str
) -> None:
    fields.setdefault("to", [("Dana", "dana@customer.example")])
    with pytest.raises(ValidationError) as refused:
        create(mailbox, django_capture_on_commit_callbacks, **fields)
    assert field_name in refused.value.message_dict
    assert "line break" in " ".join(refused.value.message_dict[field_name])
    assert not OutgoingMessage.objects.exists()
    assert smtp_peer_requiring_auth.messages == []


def test_a_temporary_failure_is_retried_with_backoff_then_sent(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, queue: DummyBackend, run_due: Callable[[], int],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    script(smtp_peer_requiring_auth, "451 4.3.0 Try again later")
    with time_machine.travel(timezone.now(), tick=False) as clock:
        outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
        assert run_due() == 1
        outgoing.refresh_from_db()
        assert outgoing.status == OutgoingStatus.FAILED_TEMPORARY
        assert outgoing.attempts == 1
        assert "451 4.3.0 Try again later" in outgoing.last_error
        assert outgoing.next_attempt_at == timezone.now() + timedelta(minutes=1)
        [retry] = queue.results
        assert retry.task.run_after == outgoing.next_attempt_at
        assert run_due() == 0  # not before its time
        clock.shift(timedelta(seconds=61))
        assert run_due() == 1
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.SENT
    assert outgoing.attempts == 2
    assert len(smtp_peer_requiring_auth.messages) == 1


def test_temporary_failures_stop_after_the_last_attempt(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int], django_capture_on_commit_callbacks: Any
) -> None:
    script(smtp_peer_requiring_auth, *["421 4.7.0 Busy"] * actions.MAX_ATTEMPTS)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
        for delay in (*actions.RETRY_DELAYS, timedelta(0)):
            assert run_due() == 1
            clock.shift(delay)
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    assert outgoing.attempts == actions.MAX_ATTEMPTS
    assert outgoing.last_error.startswith(f"Gave up after {actions.MAX_ATTEMPTS} attempts")
    assert smtp_peer_requiring_auth.messages == []


def test_a_permanent_failure_is_kept_with_the_server_reason_and_not_retried(
    mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer, queue: DummyBackend,
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    script(smtp_peer_requiring_auth, "550 5.7.1 Message rejected as spam")
    outgoing = create(mailbox, django_capture_on_commit_callbacks, kind=OutgoingKind.REPLY, conversation=conversation, to=[], subject="")
    assert run_due() == 1
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    assert outgoing.last_error == "The server answered 550 5.7.1 Message rejected as spam"
    assert queue.results == []
    assert outgoing.sent_copy == SentCopy.PENDING
    assert Message.objects.filter(conversation=conversation).count() == 1


def test_a_task_run_again_after_a_crash_never_sends_twice(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, dovecot: Dovecot, mail_user: MailUser, django_capture_on_commit_callbacks: Any,
    run_due: Callable[[], int], queue: DummyBackend,
) -> None:  # fmt: skip
    outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
    queue.clear()
    # The worker claims the message and hands it to the server, then dies before recording it.
    claimed = actions.outgoing_claim(outgoing_id=outgoing.pk)
    assert claimed is not None
    tasks.submit(claimed)
    assert len(smtp_peer_requiring_auth.messages) == 1

    tasks.send_outgoing.call(str(outgoing.pk))  # the task again, soon after
    assert len(smtp_peer_requiring_auth.messages) == 1
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.SENDING

    with time_machine.travel(timezone.now() + actions.SENDING_TIMEOUT + timedelta(seconds=1)):
        tasks.send_outgoing.call(str(outgoing.pk))  # and again, once the attempt is stale
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    assert outgoing.last_error == actions.INTERRUPTED_REASON
    assert len(smtp_peer_requiring_auth.messages) == 1


def test_a_sent_message_run_again_only_completes_its_sent_copy_once(
    mailbox: Mailbox, smtp_peer_requiring_auth: SmtpPeer, dovecot: Dovecot, mail_user: MailUser, django_capture_on_commit_callbacks: Any,
    queue: DummyBackend,
) -> None:  # fmt: skip
    outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Dana", "dana@customer.example")])
    queue.clear()
    claimed = actions.outgoing_claim(outgoing_id=outgoing.pk)
    assert claimed is not None
    actions.outgoing_mark_sent(outgoing=claimed, refused=tasks.submit(claimed))
    # The copy was appended, then the worker died before recording it.
    message_id = (claimed.envelope or {})["message_id"]
    dovecot.append(mail_user, blob_get(claimed.key_scope(), claimed.raw_blob), folder="Sent", flags=["\\Seen"])

    tasks.send_outgoing.call(str(outgoing.pk))
    tasks.send_outgoing.call(str(outgoing.pk))
    outgoing.refresh_from_db()
    assert outgoing.sent_copy == SentCopy.STORED
    assert sent_folder_ids(dovecot, mail_user) == [message_id]
    assert len(smtp_peer_requiring_auth.messages) == 1
    assert MessageCopy.objects.filter(folder__name="Sent").count() == 1


def test_reply_all_fills_recipients_and_subject_without_the_mailbox_itself(
    mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    outgoing = create(
        mailbox, django_capture_on_commit_callbacks, kind=OutgoingKind.REPLY_ALL, conversation=conversation, to=[], subject="", text="Ok\n"
    )  # fmt: skip
    run_due()
    [received] = smtp_peer_requiring_auth.messages
    assert sorted(received.recipients) == ["bob@acme.test", "dana@customer.example", "erin@customer.example"]
    message = parsed(received.content)
    assert [address.addr_spec for address in message["To"].addresses] == ["dana@customer.example"]
    assert [address.addr_spec for address in message["Cc"].addresses] == ["bob@acme.test", "erin@customer.example"]
    assert message["Subject"] == "Re: Bestellung für Müller"
    assert OutgoingMessage.objects.get().pk == outgoing.pk


def test_every_recipient_refused_permanently_is_a_permanent_failure(
    cast: Cast, dovecot: Dovecot, mail_user: MailUser, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int],
    django_capture_on_commit_callbacks: Any, mailbox: Mailbox,
) -> None:  # fmt: skip
    class RefuseRecipients(_Handler):
        async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
            return "550 5.1.1 No such user"

    smtp_peer_requiring_auth._controller.handler = RefuseRecipients(smtp_peer_requiring_auth)
    outgoing = create(mailbox, django_capture_on_commit_callbacks, to=[("Nobody", "nobody@customer.example")])
    run_due()
    outgoing.refresh_from_db()
    assert outgoing.status == OutgoingStatus.FAILED_PERMANENT
    assert "nobody@customer.example: 550 5.1.1 No such user" in outgoing.last_error


def test_gmail_files_sent_mail_itself_so_no_copy_is_appended(mailbox: Mailbox) -> None:
    assert not tasks.provider_stores_sent_mail(mailbox)
    mailbox.smtp_host = "SMTP.Gmail.com."
    assert tasks.provider_stores_sent_mail(mailbox)


def test_a_forward_carries_the_original_whole_and_is_no_reply_to_its_sender(
    mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer, run_due: Callable[[], int],
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    create(
        mailbox, django_capture_on_commit_callbacks, kind=OutgoingKind.FORWARD, conversation=conversation,
        to=[("Warehouse", "warehouse@acme.test")], subject="", text="Bitte prüfen.\n",
    )  # fmt: skip
    run_due()
    [received] = smtp_peer_requiring_auth.messages
    assert received.recipients == ("warehouse@acme.test",)
    message = parsed(received.content)
    assert message["Subject"] == "Fwd: Bestellung für Müller"
    assert message["In-Reply-To"] is None
    assert message["References"].split() == [THREAD_ROOT_ID, CUSTOMER_MESSAGE_ID]
    [original] = list(message.iter_attachments())
    assert original.get_content_type() == "message/rfc822"
    assert original.get_content()["Message-ID"] == CUSTOMER_MESSAGE_ID
