"""Writing, queueing and recording the delivery of outgoing messages.

Attackers and defences:
- A member who wants to send as someone else, or from a mailbox that is not theirs: the sending
  mailbox must be one ``selectors.sending_mailboxes`` gives the actor (their own, or the team
  mailbox of a team they are a full member of; not as an observer), and the conversation
  replied to must be one the actor can see in their organization; anything else is refused.
- Header and envelope injection (SECURITY.md R33): every field goes through
  ``postroom.mime.build.build_message`` (policy.SMTP), which refuses CR, LF, NUL and other control
  characters with an error naming the field; we show that error on the field and build nothing.
  The SMTP envelope is computed once, by ``envelope_recipients``, as exactly To + Cc + Bcc; Bcc
  never appears in a header. Threading headers are derived on the server from the conversation,
  never taken from the form.
- Sending twice: the MIME message is built once, here, and stored; every attempt sends those same
  bytes with the same Message-ID. An attempt starts only by winning a conditional UPDATE
  (queued/failed-temporary and due → sending), so two workers, or a task run again after a
  crash, cannot both send. An attempt that was interrupted mid-way is never sent again on its
  own: it may have been delivered, so it becomes a permanent failure the member can retry.
- Content at rest (R44/R45): addresses, subject, bodies and attachment names are sealed, the
  built message and the attachments are encrypted blobs; the audit trail and ``last_error`` hold
  no message content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.conversations import selectors as conversation_selectors
from postroom.conversations.models import Conversation, Message
from postroom.core.blobs import blob_get, blob_put
from postroom.core.keys import keyring
from postroom.mailboxes.models import Mailbox
from postroom.mime.build import OutgoingAttachment, build_message, envelope_recipients
from postroom.orgs.models import Membership
from postroom.outbox import compose, tasks
from postroom.outbox.models import Draft, OutgoingKind, OutgoingMessage, OutgoingStatus, SentCopy
from postroom.outbox.selectors import sending_mailboxes

# Waits after the 1st, 2nd, … failed attempt; after the last one the failure is permanent.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=60))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# An attempt still "sending" after this long was interrupted (a worker crash or kill).
SENDING_TIMEOUT = timedelta(minutes=10)
# A message due for longer than this has lost its task (the queue was flushed, the enqueue after
# the commit never happened because the process died): a live worker runs due tasks in seconds.
LOST_TASK_AFTER = timedelta(minutes=5)
MAX_ATTACHMENTS_BYTES = 25 * 1024 * 1024
MAX_ATTACHMENT_FILES = 20  # files one message takes from an upload (composer or API)
MESSAGE_ID_PURPOSE = "message-id"
INTERRUPTED_REASON = (
    "Sending was interrupted, and the message may or may not have been delivered. Check with the recipient "
    "or in the Sent folder before sending it again."
)

# build_message names the field first in each of its errors; the composer shows them there.
_ERROR_FIELDS = {"to": "to", "cc": "cc", "bcc": "bcc", "subject": "subject", "from": "mailbox", "attachment": "attachments"}


@dataclass(frozen=True)
class Composed:
    to: Sequence[tuple[str, str]]
    cc: Sequence[tuple[str, str]]
    bcc: Sequence[tuple[str, str]]
    subject: str
    text: str
    html: str | None
    attachments: Sequence[OutgoingAttachment]


def message_id_index(organization_id: object, message_id: str) -> str:
    scope = f"org:{organization_id}"
    return keyring().blind_index(scope, MESSAGE_ID_PURPOSE, message_id)


def _field_error(error: ValueError) -> ValidationError:
    text = str(error)
    first_word = text.split(" ", 1)[0].lower()
    field = _ERROR_FIELDS.get(first_word, "__all__")
    return ValidationError({field: [text[:1].upper() + text[1:]]})


def _check_access(actor: Membership, mailbox: Mailbox | None, conversation: Conversation | None) -> None:
    if mailbox is not None and not (
        mailbox.organization_id == actor.organization_id and sending_mailboxes(actor=actor).filter(pk=mailbox.pk).exists()
    ):
        raise PermissionDenied("You can send only from your own mailboxes and your teams' mailboxes.")
    if conversation is not None:
        if conversation.organization_id != actor.organization_id:
            raise PermissionDenied("This conversation is not in your organization.")
        # One the actor can see (their own mail, or shared with them): 404 otherwise.
        conversation_selectors.conversation_get(actor=actor, conversation_id=conversation.pk)


def outgoing_create(
    *,
    actor: Membership,
    mailbox: Mailbox,
    kind: str,
    conversation: Conversation | None = None,
    to: Sequence[tuple[str, str]],
    cc: Sequence[tuple[str, str]] = (),
    bcc: Sequence[tuple[str, str]] = (),
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[OutgoingAttachment] = (),
    draft: Draft | None = None,
    request: HttpRequest | None = None,
) -> OutgoingMessage:
    """Build the message, store it sealed and queue it for sending after the commit; the
    ``draft`` it was written in is deleted in the same transaction.

    Raises ``ValidationError`` (keyed by form field) for anything that cannot be sent as given.
    """
    if kind not in OutgoingKind.values:
        raise ValidationError({"__all__": ["Unknown kind of message."]})
    if (kind == OutgoingKind.NEW) != (conversation is None):
        raise ValidationError({"__all__": ["A reply or forward needs a conversation; a new message has none."]})
    _check_access(actor, mailbox, conversation)
    if sum(len(attachment.content) for attachment in attachments) > MAX_ATTACHMENTS_BYTES:
        raise ValidationError({"attachments": [f"Attachments may total at most {MAX_ATTACHMENTS_BYTES // (1024 * 1024)} MB."]})
    start = compose.draft_for(actor=actor, mailbox=mailbox, conversation=conversation, kind=kind)
    if not (to or cc or bcc) and kind in (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL):
        to, cc = start.to, start.cc
    subject = subject or start.subject
    all_attachments = list(attachments)
    if kind == OutgoingKind.FORWARD and start.original is not None:
        # The original travels whole, with its own attachments, as message/rfc822.
        original_raw = blob_get(start.original.key_scope(), start.original.raw_blob)
        all_attachments.append(OutgoingAttachment(filename="forwarded-message.eml", content_type="message/rfc822", content=original_raw))
    return _build_and_queue(
        author=actor, mailbox=mailbox, kind=kind, conversation=conversation, to=to, cc=cc, bcc=bcc, subject=subject,
        text=text, html=html, attachments=attachments, sent_attachments=all_attachments, in_reply_to=start.in_reply_to,
        references=start.references, draft=draft, request=request,
    )  # fmt: skip


def _build_and_queue(
    *, author: Membership | None, mailbox: Mailbox, kind: str, conversation: Conversation | None, to: Sequence[tuple[str, str]],
    cc: Sequence[tuple[str, str]], bcc: Sequence[tuple[str, str]], subject: str, text: str, html: str | None,
    attachments: Sequence[OutgoingAttachment], sent_attachments: Sequence[OutgoingAttachment], in_reply_to: str | None,
    references: Sequence[str], draft: Draft | None = None, request: HttpRequest | None = None,
    extra_headers: dict[str, str] | None = None,
    automatic: bool = False,
) -> OutgoingMessage:  # fmt: skip
    """Build, store sealed and queue (after the commit) one message; ``author`` None for one the
    organization sends (an organization rule's automatic reply)."""
    domain = mailbox.email_address.rpartition("@")[2]
    try:
        domain = domain.encode("idna").decode("ascii")
        built = build_message(
            from_=(mailbox.name if mailbox.name != mailbox.email_address else "", mailbox.email_address),
            to=list(to),
            cc=list(cc),
            bcc=list(bcc),
            subject=subject,
            text=text,
            html=html,
            attachments=sent_attachments,
            in_reply_to=in_reply_to,
            references=references,
            message_id_domain=domain,
            extra_headers=extra_headers,
        )
    except UnicodeError as error:
        raise ValidationError({"mailbox": ["The mailbox's address has an invalid domain."]}) from error
    except ValueError as error:
        raise _field_error(error) from error
    raw = built.as_bytes()
    message_id = str(built["Message-ID"])
    organization_id = mailbox.organization_id
    scope = f"org:{organization_id}"
    # Blobs first, outside the transaction when there is none around us (slow I/O); an orphan
    # after a rollback is harmless.
    raw_blob = blob_put(scope, raw)
    stored_attachments = [
        {"filename": attachment.filename, "content_type": attachment.content_type, "size": len(attachment.content),
         "blob": blob_put(scope, attachment.content)}
        for attachment in attachments
    ]  # fmt: skip
    outgoing = OutgoingMessage(
        organization_id=organization_id,
        mailbox=mailbox,
        author=author,
        automatic=automatic,
        conversation=conversation,
        kind=kind,
        raw_blob=raw_blob,
        message_id_index=message_id_index(organization_id, message_id),
    )
    outgoing.envelope = {
        "from": [mailbox.name, mailbox.email_address],
        "to": [list(pair) for pair in to],
        "cc": [list(pair) for pair in cc],
        "bcc": [list(pair) for pair in bcc],
        "recipients": envelope_recipients(built),
        "subject": subject,
        "text": text,
        "html": html,
        "message_id": message_id,
        "in_reply_to": in_reply_to,
        "references": list(references),
        "attachments": stored_attachments,
    }
    with transaction.atomic():
        outgoing.save()
        if draft is not None and author is not None:
            Draft.objects.filter(pk=draft.pk, author=author).delete()
        audit_record(
            action="outbox.message_queued" if not extra_headers else "outbox.auto_reply_queued",
            actor=author.user if author is not None else None, organization=mailbox.organization, request=request,
            target=outgoing, target_label=outgoing.get_kind_display(),
            details={"mailbox": str(mailbox.pk), "recipients": len(outgoing.envelope["recipients"]), "attachments": len(attachments)},
        )  # fmt: skip
        _enqueue_after_commit(outgoing.pk)
    return outgoing


def outgoing_queue_auto_reply(
    *, author: Membership | None, mailbox: Mailbox, conversation: Conversation, to: tuple[str, str], subject: str, text: str,
    html: str | None, attachments: Sequence[OutgoingAttachment], in_reply_to: str | None, references: Sequence[str],
) -> OutgoingMessage:  # fmt: skip
    """Queue a rule's automatic reply (``postroom.rules.autoreply``, which decided that one may be
    sent and from which mailbox): marked ``Auto-Submitted: auto-replied`` (RFC 3834) so that other
    responders do not answer it, and ``X-Auto-Response-Suppress: All`` for Exchange's.

    It runs inside the ingest transaction (rules run before the conversation becomes visible), so
    its blobs are written inside it: an orphan after a rollback is harmless."""
    if mailbox.organization_id != conversation.organization_id:
        raise PermissionDenied("The mailbox is not in the conversation's organization.")
    return _build_and_queue(
        author=author, mailbox=mailbox, kind=OutgoingKind.REPLY, conversation=conversation, to=[to], cc=(), bcc=(),
        subject=subject, text=text, html=html, attachments=attachments, sent_attachments=attachments, in_reply_to=in_reply_to,
        references=references, extra_headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
        automatic=True,
    )  # fmt: skip


def _enqueue_after_commit(outgoing_id: UUID, run_after: datetime | None = None) -> None:
    def enqueue() -> None:
        task = tasks.send_outgoing if run_after is None else tasks.send_outgoing.using(run_after=run_after)
        task.enqueue(str(outgoing_id))

    transaction.on_commit(enqueue)


def outgoing_retry(*, actor: Membership, outgoing: OutgoingMessage, request: HttpRequest | None = None) -> OutgoingMessage:
    """A member sends a failed message again (the same bytes, the same Message-ID)."""
    if outgoing.organization_id != actor.organization_id or outgoing.author_id != actor.pk:
        raise PermissionDenied("This is not your message.")
    with transaction.atomic():
        updated = OutgoingMessage.objects.filter(pk=outgoing.pk, status=OutgoingStatus.FAILED_PERMANENT).update(
            status=OutgoingStatus.QUEUED, attempts=0, next_attempt_at=None, sending_started_at=None, last_error=""
        )
        if not updated:
            raise ValidationError("Only a message that failed can be sent again.")
        audit_record(
            action="outbox.message_retried", actor=actor.user, organization=actor.organization, request=request,
            target=outgoing, target_label=outgoing.get_kind_display(),
        )  # fmt: skip
        _enqueue_after_commit(outgoing.pk)
    outgoing.refresh_from_db()
    return outgoing


# --- delivery bookkeeping (called by the send task, no acting member) --------------------------------
def outgoing_claim(*, outgoing_id: UUID) -> OutgoingMessage | None:
    """Start an attempt if this message is due, and return it; None if another attempt owns it,
    it was sent already, or it is not due yet. A stale attempt is turned into a failure here."""
    now = timezone.now()
    stale = OutgoingMessage.objects.filter(pk=outgoing_id, status=OutgoingStatus.SENDING, sending_started_at__lt=now - SENDING_TIMEOUT)
    if stale.update(status=OutgoingStatus.FAILED_PERMANENT, last_error=INTERRUPTED_REASON[:300], sending_started_at=None):
        return None
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    claimed = (
        OutgoingMessage.objects.filter(due, pk=outgoing_id, status__in=[OutgoingStatus.QUEUED, OutgoingStatus.FAILED_TEMPORARY])
        .update(status=OutgoingStatus.SENDING, attempts=F("attempts") + 1, sending_started_at=now)
    )  # fmt: skip
    if not claimed:
        return None
    return OutgoingMessage.objects.select_related("mailbox", "organization").get(pk=outgoing_id)


def outgoing_sender_problem(outgoing: OutgoingMessage) -> str:
    """Why this message may no longer be sent, or "" (R38: a right checked when the message was
    queued is checked again when it leaves, since a retry can come hours later). A member's message
    needs its author still in the organization and still allowed to send from the mailbox: removed
    from the team of a team mailbox, or from the organization, their queued mail stays unsent."""
    if outgoing.automatic:
        return ""
    if outgoing.author_id is None:
        return "Not sent: its author is no longer a member of the organization."
    author = Membership.objects.filter(pk=outgoing.author_id, organization_id=outgoing.organization_id).first()
    if author is None or not sending_mailboxes(actor=author).filter(pk=outgoing.mailbox_id).exists():
        return "Not sent: its author may no longer send from this mailbox."
    return ""


def outgoing_mark_sent(*, outgoing: OutgoingMessage, refused: dict[str, str]) -> None:
    """The server accepted the message (for every recipient but ``refused``: address → reason)."""
    note = "; ".join(f"Not accepted for {address}: {reason}" for address, reason in refused.items())
    with transaction.atomic():
        OutgoingMessage.objects.filter(pk=outgoing.pk, status=OutgoingStatus.SENDING).update(
            status=OutgoingStatus.SENT, sent_at=timezone.now(), sending_started_at=None, next_attempt_at=None, last_error=note[:300]
        )
        audit_record(
            action="outbox.message_sent", organization=outgoing.organization, target=outgoing,
            target_label=outgoing.get_kind_display(), details={"attempt": outgoing.attempts, "refused": len(refused)},
        )  # fmt: skip
    outgoing.refresh_from_db()


def outgoing_mark_failed(*, outgoing: OutgoingMessage, reason: str, temporary: bool) -> None:
    """Record a failed attempt: retried later with backoff while temporary and attempts remain."""
    retry = temporary and outgoing.attempts < MAX_ATTEMPTS
    with transaction.atomic():
        changes: dict[str, Any] = {"sending_started_at": None, "last_error": reason[:300]}
        if retry:
            next_attempt_at = timezone.now() + RETRY_DELAYS[outgoing.attempts - 1]
            changes.update(status=OutgoingStatus.FAILED_TEMPORARY, next_attempt_at=next_attempt_at)
            _enqueue_after_commit(outgoing.pk, run_after=next_attempt_at)
        else:
            if temporary:
                changes["last_error"] = f"Gave up after {outgoing.attempts} attempts. {reason}"[:300]
            changes.update(status=OutgoingStatus.FAILED_PERMANENT, next_attempt_at=None)
        OutgoingMessage.objects.filter(pk=outgoing.pk, status=OutgoingStatus.SENDING).update(**changes)
        audit_record(
            action="outbox.message_failed", organization=outgoing.organization, target=outgoing,
            target_label=outgoing.get_kind_display(), result="failure",
            details={"attempt": outgoing.attempts, "will_retry": retry},
        )  # fmt: skip
    outgoing.refresh_from_db()


def outgoing_record_sent_copy(*, outgoing: OutgoingMessage, state: str, message: Message | None = None, note: str = "") -> None:
    changes: dict[str, Any] = {"sent_copy": state, "message": message}
    if note:
        changes["last_error"] = note[:300]
    OutgoingMessage.objects.filter(pk=outgoing.pk, sent_copy=SentCopy.PENDING).update(**changes)
    outgoing.refresh_from_db()


@dataclass(frozen=True)
class SweepOutcome:
    requeued: int
    interrupted: int


def outgoing_sweep() -> SweepOutcome:
    """Repair the queue (run every minute by the sync service): queue again the messages whose
    task was lost, and turn attempts interrupted mid-way into failures the member can retry.

    Queueing a message whose task is in fact still pending is harmless: only one attempt can win
    the claim. Each message queued again is made due now, so that it is queued again at most
    once per ``LOST_TASK_AFTER`` while no worker runs."""
    now = timezone.now()
    overdue = now - LOST_TASK_AFTER
    lost = OutgoingMessage.objects.filter(
        Q(status=OutgoingStatus.QUEUED, next_attempt_at__isnull=True, created_at__lt=overdue)
        | Q(status__in=[OutgoingStatus.QUEUED, OutgoingStatus.FAILED_TEMPORARY], next_attempt_at__lt=overdue)
    )
    requeued = 0
    for outgoing_id in lost.values_list("id", flat=True):
        with transaction.atomic():
            # Only if still lost: an attempt may have claimed it since the query.
            if lost.filter(pk=outgoing_id).update(next_attempt_at=now):
                _enqueue_after_commit(outgoing_id)
                requeued += 1
    interrupted = 0
    stale = OutgoingMessage.objects.filter(status=OutgoingStatus.SENDING, sending_started_at__lt=now - SENDING_TIMEOUT)
    for outgoing in stale.select_related("organization"):
        with transaction.atomic():
            if not stale.filter(pk=outgoing.pk).update(
                status=OutgoingStatus.FAILED_PERMANENT, last_error=INTERRUPTED_REASON[:300], sending_started_at=None
            ):
                continue
            audit_record(
                action="outbox.message_failed", organization=outgoing.organization, target=outgoing,
                target_label=outgoing.get_kind_display(), result="failure",
                details={"attempt": outgoing.attempts, "will_retry": False, "interrupted": True},
            )  # fmt: skip
            interrupted += 1
    return SweepOutcome(requeued=requeued, interrupted=interrupted)


# --- drafts ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Typed:
    """What the member typed into the composer, as text: a draft keeps addresses that cannot be
    read yet, so that nothing typed is lost; they are checked when the message is sent."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    text: str = ""


def _stored_attachments(scope: str, attachments: Sequence[OutgoingAttachment]) -> list[dict[str, Any]]:
    return [
        {"filename": attachment.filename, "content_type": attachment.content_type, "size": len(attachment.content),
         "blob": blob_put(scope, attachment.content)}
        for attachment in attachments
    ]  # fmt: skip


def draft_save(
    *,
    actor: Membership,
    draft: Draft | None,
    kind: str,
    conversation: Conversation | None,
    mailbox: Mailbox | None,
    typed: Typed,
    attachments: Sequence[OutgoingAttachment] = (),
) -> Draft:
    """Create the actor's draft, or save what they typed into it, adding ``attachments``.

    A draft is the actor's alone: another member's draft is refused, and so are a mailbox that
    is not the actor's and a conversation they cannot see (404). Saving is not audited: it
    happens every few seconds while someone types, and says nothing about access."""
    if kind not in OutgoingKind.values:
        raise ValidationError({"__all__": ["Unknown kind of message."]})
    if draft is not None:
        if draft.author_id != actor.pk or draft.organization_id != actor.organization_id:
            raise PermissionDenied("This is not your draft.")
        conversation = draft.conversation
    if (kind == OutgoingKind.NEW) != (conversation is None):
        raise ValidationError({"__all__": ["A reply or forward needs a conversation; a new message has none."]})
    _check_access(actor, mailbox, conversation)
    added = sum(len(attachment.content) for attachment in attachments)
    already = sum(int(item.get("size", 0)) for item in ((draft.content or {}).get("attachments", []) if draft else []))
    if added + already > MAX_ATTACHMENTS_BYTES:
        raise ValidationError({"attachments": [f"Attachments may total at most {MAX_ATTACHMENTS_BYTES // (1024 * 1024)} MB."]})
    # Blobs first, outside the transaction (slow I/O); an orphan after a rollback is harmless.
    stored = _stored_attachments(f"org:{actor.organization_id}", attachments)
    with transaction.atomic():
        if draft is None:
            draft = Draft(organization_id=actor.organization_id, author=actor, conversation=conversation)
            kept: list[dict[str, Any]] = []
        else:
            # Locked and read again: two saves racing must not drop each other's attachments.
            draft = Draft.objects.select_for_update().get(pk=draft.pk)
            kept = list((draft.content or {}).get("attachments", []))
        draft.kind = kind
        draft.mailbox = mailbox
        draft.content = {
            "to": typed.to, "cc": typed.cc, "bcc": typed.bcc, "subject": typed.subject, "text": typed.text,
            "attachments": kept + stored,
        }  # fmt: skip
        draft.save()
    return draft


def draft_attachments(*, draft: Draft) -> list[OutgoingAttachment]:
    """The draft's attachments with their content, to send them."""
    return [
        OutgoingAttachment(filename=item["filename"], content_type=item["content_type"], content=blob_get(draft.key_scope(), item["blob"]))
        for item in (draft.content or {}).get("attachments", [])
    ]


def draft_detach(*, actor: Membership, draft: Draft, index: int) -> Draft:
    """Take the ``index``-th attachment off the draft."""
    if draft.author_id != actor.pk or draft.organization_id != actor.organization_id:
        raise PermissionDenied("This is not your draft.")
    with transaction.atomic():
        draft = Draft.objects.select_for_update().get(pk=draft.pk)
        content = dict(draft.content or {})
        attachments = list(content.get("attachments", []))
        if not 0 <= index < len(attachments):
            raise ValidationError("That attachment is no longer on the draft.")
        del attachments[index]
        content["attachments"] = attachments
        draft.content = content
        draft.save(update_fields=["content_sealed", "updated_at"])
    return draft


def draft_delete(*, actor: Membership, draft: Draft) -> None:
    if draft.author_id != actor.pk or draft.organization_id != actor.organization_id:
        raise PermissionDenied("This is not your draft.")
    Draft.objects.filter(pk=draft.pk).delete()
