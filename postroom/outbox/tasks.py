"""The send task: one attempt to deliver one outgoing message, then its copy in the Sent folder.

Network I/O never runs inside a database transaction: the attempt is claimed (committed), the
message is submitted over SMTP, the outcome is recorded (committed), and only then is the copy
appended over IMAP. Each step is safe to run again after a crash at any point:

- crash before the outcome is recorded: the row stays "sending"; a later run does not send again
  (the claim fails) and, once the attempt is stale, turns it into a failure the member can retry,
  because the message may have been delivered (at most once is the rule for mail);
- crash after "sent" but before the Sent copy: a later run only stores the copy, and looks for
  our Message-ID in the Sent folder first, so an APPEND that completed is not repeated.

Credentials come from ``mailbox_sign_in_credentials``, which renews an expiring OAuth2 access
token first. Temporary failures (SMTP 4xx, connection, TLS or sign-in errors, a token endpoint
that did not answer) are retried with backoff by enqueueing the task again with ``run_after``;
permanent ones (5xx, every recipient refused, a revoked OAuth2 grant) are shown to the member
with the server's reason.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
from uuid import UUID

from django_tasks import task
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import SEEN, SENT

from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Direction
from postroom.core.blobs import blob_get
from postroom.mailboxes.connection import MailConnectionError, ServerSettings, TlsMode, open_imap, open_smtp
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.oauth import OAuthError, OAuthGrantRevoked, mailbox_sign_in_credentials
from postroom.mailboxes.protocol_values import UnsafeProtocolValue, imap_folder_name
from postroom.outbox import actions
from postroom.outbox.models import OutgoingMessage, OutgoingStatus, SentCopy

logger = logging.getLogger(__name__)

# Submission servers that file every message they relay in the account's Sent folder
# themselves; appending our own copy there would show the message twice. Gmail and Google
# Workspace do (their IMAP "[Gmail]/Sent Mail"); the others in our presets do not document it.
PROVIDERS_STORING_SENT_MAIL = frozenset({"smtp.gmail.com", "smtp.googlemail.com"})
_APPEND_UID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_SERVER_TEXT_LIMIT = 200


def provider_stores_sent_mail(mailbox: Mailbox) -> bool:
    return mailbox.smtp_host.strip().rstrip(".").lower() in PROVIDERS_STORING_SENT_MAIL


def _server_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    cleaned = " ".join("".join(character if character.isprintable() else " " for character in text).split())
    return cleaned[:_SERVER_TEXT_LIMIT]


def _server(mailbox: Mailbox, protocol: str) -> ServerSettings:
    host, port, tls = (
        (mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_tls)
        if protocol == "smtp"
        else (mailbox.imap_host, mailbox.imap_port, mailbox.imap_tls)
    )
    return ServerSettings(host=host, port=port, tls=TlsMode(tls), private_ca_pem=mailbox.private_ca_pem or None)


class _AttemptFailedError(Exception):
    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary


def _reply(code: int, text: bytes | str) -> str:
    return f"{code} {_server_text(text)}"


def submit(outgoing: OutgoingMessage) -> dict[str, str]:
    """Hand the stored message to the mailbox's SMTP server; the recipients it refused (when it
    accepted the others), or ``_AttemptFailedError``."""
    mailbox = outgoing.mailbox
    envelope = outgoing.envelope or {}
    raw = blob_get(outgoing.key_scope(), outgoing.raw_blob)
    try:
        smtp = open_smtp(_server(mailbox, "smtp"), mailbox_sign_in_credentials(mailbox))
    except MailConnectionError as error:
        raise _AttemptFailedError(error.message, temporary=True) from error
    except OAuthGrantRevoked as error:
        # Retrying cannot help until the member connects the mailbox again; then they retry it.
        raise _AttemptFailedError(str(error), temporary=False) from error
    except OAuthError as error:
        raise _AttemptFailedError(str(error), temporary=True) from error
    except (UnsafeProtocolValue, ValueError) as error:
        raise _AttemptFailedError(f"The mailbox settings cannot be used: {error}", temporary=False) from error
    try:
        refused = smtp.sendmail(mailbox.email_address, envelope["recipients"], raw)
    except smtplib.SMTPRecipientsRefused as error:
        replies = error.recipients.values()
        reasons = "; ".join(f"{address}: {_reply(code, text)}" for address, (code, text) in error.recipients.items())
        raise _AttemptFailedError(
            f"Every recipient was refused ({reasons})", temporary=any(400 <= code < 500 for code, _ in replies)
        ) from error
    except smtplib.SMTPResponseException as error:
        code = error.smtp_code
        raise _AttemptFailedError(f"The server answered {_reply(code, error.smtp_error)}", temporary=not 500 <= code < 600) from error
    except (smtplib.SMTPException, OSError) as error:
        raise _AttemptFailedError(
            f"The connection to the SMTP server was lost ({_server_text(str(error)) or type(error).__name__})", temporary=True
        ) from error
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
    return {address: _reply(code, text) for address, (code, text) in refused.items()}


def _sent_folder_name(mailbox: Mailbox, client: object) -> str | None:
    known = Folder.objects.filter(mailbox=mailbox, role=FolderRole.SENT).values_list("name", flat=True).first()
    if known:
        return known
    found = client.find_special_folder(SENT)  # type: ignore[attr-defined]
    return str(found) if found else None


def store_sent_copy(outgoing: OutgoingMessage) -> None:
    """Put the sent message in the server's Sent folder (unless the provider does) and into its
    conversation, as the copy the sync engine will find there later (same folder, UIDVALIDITY,
    UID, so it is not imported twice)."""
    mailbox = outgoing.mailbox
    if provider_stores_sent_mail(mailbox):
        # The provider's copy arrives through sync; meanwhile the queue row shows it as sent.
        actions.outgoing_record_sent_copy(outgoing=outgoing, state=SentCopy.PROVIDER)
        return
    raw = blob_get(outgoing.key_scope(), outgoing.raw_blob)
    message_id = (outgoing.envelope or {})["message_id"]
    try:
        client = open_imap(_server(mailbox, "imap"), mailbox_sign_in_credentials(mailbox))
    except (MailConnectionError, OAuthError) as error:
        reason = error.message if isinstance(error, MailConnectionError) else str(error)
        actions.outgoing_record_sent_copy(
            outgoing=outgoing, state=SentCopy.FAILED, note=f"Sent, but not stored in the Sent folder: {reason}"
        )
        return
    try:
        name = _sent_folder_name(mailbox, client)
        if name is None:
            actions.outgoing_record_sent_copy(outgoing=outgoing, state=SentCopy.NO_FOLDER)
            return
        imap_folder_name(name)
        uidvalidity = int(client.select_folder(name)[b"UIDVALIDITY"])
        # A copy stored by an earlier, interrupted run: use it rather than append a second one.
        existing = client.search(["HEADER", "Message-ID", message_id])
        if existing:
            uid = int(max(existing))
        else:
            response = client.append(name, raw, flags=(SEEN,))
            appended = _APPEND_UID.search(response if isinstance(response, bytes) else str(response).encode())
            if appended is not None:
                uidvalidity, uid = int(appended.group(1)), int(appended.group(2))
            else:  # a server without UIDPLUS: find what we just appended
                client.noop()
                uid = int(max(client.search(["HEADER", "Message-ID", message_id]) or [0]))
    except (IMAPClientError, OSError, UnsafeProtocolValue) as error:
        actions.outgoing_record_sent_copy(
            outgoing=outgoing, state=SentCopy.FAILED, note=f"Sent, but not stored in the Sent folder: {_server_text(str(error))}"
        )
        return
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    if not uid:
        actions.outgoing_record_sent_copy(
            outgoing=outgoing, state=SentCopy.FAILED, note="Sent, but the copy was not found in the Sent folder."
        )
        return
    folder, _ = Folder.objects.get_or_create(mailbox=mailbox, name=name, defaults={"role": FolderRole.SENT})
    copy = message_ingest(
        mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid, raw=raw, flags=(SEEN,), direction=Direction.OUTBOUND
    )
    actions.outgoing_record_sent_copy(outgoing=outgoing, state=SentCopy.STORED, message=copy.message)


def deliver(outgoing_id: UUID) -> None:
    outgoing = actions.outgoing_claim(outgoing_id=outgoing_id)
    if outgoing is None:
        # Not ours to send; but a message sent before a crash may still lack its Sent copy.
        unfinished = (
            OutgoingMessage.objects.select_related("mailbox", "organization")
            .filter(pk=outgoing_id, status=OutgoingStatus.SENT, sent_copy=SentCopy.PENDING)
            .first()
        )
        if unfinished is not None:
            store_sent_copy(unfinished)
        return
    problem = actions.outgoing_sender_problem(outgoing)
    if problem:
        logger.info("outgoing %s: refused at send time", outgoing.pk)
        actions.outgoing_mark_failed(outgoing=outgoing, reason=problem, temporary=False)
        return
    try:
        refused = submit(outgoing)
    except _AttemptFailedError as failure:
        logger.info(
            "outgoing %s: attempt %d failed (%s)", outgoing.pk, outgoing.attempts, "temporary" if failure.temporary else "permanent"
        )
        actions.outgoing_mark_failed(outgoing=outgoing, reason=failure.reason, temporary=failure.temporary)
        return
    actions.outgoing_mark_sent(outgoing=outgoing, refused=refused)
    store_sent_copy(outgoing)


@task(queue_name="default")
def send_outgoing(outgoing_id: str) -> None:
    deliver(UUID(outgoing_id))
