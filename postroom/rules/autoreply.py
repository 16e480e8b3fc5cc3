"""The auto-reply action of rules: answer an incoming message with a canned response, when an
automatic reply may be sent (RFC 3834).

Threat model: an auto-reply is mail the server sends on its own, to an address an outsider chose,
with text a member wrote earlier. Misused, it floods a victim (a forged From), answers mailing
lists and bounces, or loops with another responder (ours or someone else's). Defences:

- never to mail that is itself automatic or bulk: ``Auto-Submitted`` other than ``no``,
  ``Precedence: bulk/junk/list``, any ``List-Id``/``List-Unsubscribe``, ``X-Auto-Response-Suppress``,
  an empty or missing ``Return-Path`` (bounces), senders such as ``mailer-daemon`` and
  ``postmaster`` or ``noreply`` addresses;
- never to our own addresses (a mailbox of the organization), so two rules cannot ping-pong;
- at most once per rule, sender and day (``AutoReplySent``, keyed by a blind index of the address);
- our own replies say ``Auto-Submitted: auto-replied`` (and ``X-Auto-Response-Suppress: All``),
  so that a responder that follows RFC 3834, ours included, does not answer them;
- the response is rendered as the rule's owner (``response_render`` checks again that they may
  use it; an organization rule renders as the admin who last saved it and may use organization
  and team responses only), with no custom inputs: nobody is there to fill them in;
- the reply goes out from the mailbox that received the message, threaded (In-Reply-To and
  References from the message answered), to its Reply-To or From, through the outbox queue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date
from email import policy
from email.header import decode_header, make_header
from email.message import Message as EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from postroom.conversations.models import Conversation, Direction, Message
from postroom.core.blobs import blob_get
from postroom.core.keys import keyring, org_scope
from postroom.mailboxes.models import Mailbox
from postroom.mime.build import OutgoingAttachment
from postroom.orgs.models import Membership
from postroom.outbox.models import OutgoingKind, OutgoingMessage
from postroom.responses.models import Response, Scope
from postroom.rules.models import AutoReplySent, Rule

logger = logging.getLogger(__name__)

# Headers are what the checks read: a message's first 256 KB hold them (a longer header block is
# not mail anyone answers).
_HEADER_BYTES = 256 * 1024
MAX_REFERENCES = 20

_AUTOMATIC_LOCAL_PARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "do-not-reply", "donotreply", "bounce", "bounces")


def auto_reply_refusal(headers: EmailMessage, *, own_addresses: Iterable[str]) -> str:
    """Why no automatic reply may answer this message ("" when one may)."""
    auto_submitted = (headers.get("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        return "automatic message (Auto-Submitted)"
    if (headers.get("Precedence") or "").strip().lower() in ("bulk", "junk", "list"):
        return "bulk or list mail (Precedence)"
    if headers.get("List-Id") is not None or headers.get("List-Unsubscribe") is not None:
        return "mailing list"
    if headers.get("X-Auto-Response-Suppress") is not None:
        return "the sender asks for no automatic replies"
    return_path = headers.get("Return-Path")
    if return_path is not None and parseaddr(str(return_path))[1] == "":
        return "a bounce (empty Return-Path)"
    sender = parseaddr(str(headers.get("Reply-To") or headers.get("From") or ""))[1].strip().lower()
    if not sender or "@" not in sender:
        return "no sender address"
    local = sender.split("@", 1)[0]
    if local in _AUTOMATIC_LOCAL_PARTS or local.startswith(("mailer-daemon", "bounce")):
        return "an automatic sender"
    if sender in {address.strip().lower() for address in own_addresses}:
        return "one of our own addresses"
    return ""


def auto_reply_claim(*, rule: Rule, sender: str, day: date) -> bool:
    """Record that ``rule`` answers ``sender`` on ``day``; False when it already did."""
    index = keyring().blind_index(org_scope(rule.organization_id), "auto-reply-sender", sender.strip().lower())
    try:
        with transaction.atomic():
            AutoReplySent.objects.create(rule=rule, sender_index=index, day=day)
    except IntegrityError:
        return False
    return True


def rule_responder(rule: Rule) -> Membership | None:
    """Whom the response is rendered as: the owner of a personal rule, the admin who last saved an
    organization rule."""
    return rule.owner if rule.owner is not None else rule.updated_by


def response_problem(*, organization_id: int, owner: Membership | None, editor: Membership | None, response_id: str) -> str:
    """Why the rule may not answer with this response now ("" when it may): checked on save and
    at every run (``definition.authorisation_problem``)."""
    from postroom.responses.actions import response_inputs
    from postroom.responses.selectors import responses_visible_to

    responder = owner if owner is not None else editor
    if responder is None:
        return "Nobody can send this rule's automatic reply."
    responses = responses_visible_to(actor=responder).filter(pk=response_id, organization_id=organization_id)
    if owner is None:
        responses = responses.filter(scope__in=[Scope.ORGANIZATION, Scope.TEAM])
    response = responses.first()
    if response is None:
        return (
            "The response of the automatic reply is gone or no longer usable by the rule's owner."
            if owner is not None
            else "The response of the automatic reply is gone, or is not an organization or team response."
        )
    if response_inputs(response):
        return "The response of the automatic reply asks for inputs, which nobody is there to fill in."
    return ""


def _headers(message: Message) -> EmailMessage:
    from postroom.conversations.ingest import raw_blobs_ready

    raw_blobs_ready()
    raw = blob_get(message.key_scope(), message.raw_blob)[:_HEADER_BYTES]
    return BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)


def _message_ids(value: Any) -> list[str]:
    from postroom.outbox.compose import _PLAIN_MESSAGE_ID

    return _PLAIN_MESSAGE_ID.findall(str(value or ""))


def auto_reply_send(*, rule: Rule, conversation: Conversation, message: Message | None, mailbox_ids: Iterable[Any],
                    response_id: str) -> OutgoingMessage | None:  # fmt: skip
    """Queue the rule's automatic reply to ``message``, or None when none may be sent (a reason
    is logged, with no address). Runs inside the rule's savepoint: if anything after the claim
    fails, the claim is undone with the rest."""
    from postroom.outbox.actions import outgoing_queue_auto_reply
    from postroom.outbox.compose import subject_for
    from postroom.responses.actions import RenderContext, response_attachment_content, response_render

    if message is None or message.direction != Direction.INBOUND:
        return None
    mailbox = (
        Mailbox.objects.filter(pk__in=[str(pk) for pk in mailbox_ids], organization_id=rule.organization_id).order_by("pk").first()
    )
    if mailbox is None:
        return None
    headers = _headers(message)
    name, sender = parseaddr(str(headers.get("Reply-To") or headers.get("From") or ""))
    sender = sender.strip()
    try:
        name = str(make_header(decode_header(name)))
    except (ValueError, LookupError, UnicodeError):
        name = ""
    name = " ".join("".join(character if character.isprintable() else " " for character in name).split())[:100]
    own = [mailbox.email_address, *Mailbox.objects.filter(email_address__iexact=sender).values_list("email_address", flat=True)]
    refusal = auto_reply_refusal(headers, own_addresses=own)
    if not refusal and len(getaddresses([str(headers.get("Reply-To") or headers.get("From") or "")])) != 1:
        refusal = "more than one sender address"
    if refusal:
        logger.info("rules: rule %s sends no automatic reply to message %s: %s", rule.pk, message.pk, refusal)
        return None
    responder = rule_responder(rule)
    response = Response.objects.filter(pk=response_id, organization_id=rule.organization_id).first()
    if responder is None or response is None:
        return None
    rendered = response_render(actor=responder, response=response, context=RenderContext(recipient=(name, sender)))
    if rendered.missing_inputs:
        return None
    if not auto_reply_claim(rule=rule, sender=sender, day=timezone.localdate()):
        logger.info("rules: rule %s already answered this sender today (message %s)", rule.pk, message.pk)
        return None
    message_id = next(iter(_message_ids(headers.get("Message-ID"))), None)
    references = [*_message_ids(headers.get("References"))]
    if message_id is not None and message_id not in references:
        references.append(message_id)
    if len(references) > MAX_REFERENCES:
        references = [references[0], *references[-(MAX_REFERENCES - 1) :]]
    subject = rendered.subject or subject_for(OutgoingKind.REPLY, message.subject or conversation.subject or "")
    attachments = [
        OutgoingAttachment(filename=item.filename or "attachment", content_type=item.content_type, content=response_attachment_content(item))
        for item in rendered.attachments
    ]
    try:
        return outgoing_queue_auto_reply(
            author=rule.owner, mailbox=mailbox, conversation=conversation, to=(name, sender), subject=subject, text=rendered.text,
            html=rendered.html, attachments=attachments, in_reply_to=message_id, references=references,
        )  # fmt: skip
    except ValidationError:
        # The sender's address or name cannot be written in a header (build_message refuses):
        # the sender's doing, not the rule's, so the rule is not flagged.
        logger.info("rules: rule %s cannot address an automatic reply to message %s", rule.pk, message.pk)
        return None
