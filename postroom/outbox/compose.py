"""What a reply, reply-all or forward starts from: recipients, subject, threading headers, quote.

Everything here is derived from the conversation's last message that the writer can see (never a
teammate's private message threaded into a shared conversation: its text would be quoted), which
an outsider wrote: its addresses, subject and Message-IDs are attacker-controlled. Nothing is trusted for its shape:
Message-IDs that are not plain ``<id@domain>`` are dropped (a malformed one in a received mail
must not make replying impossible), the References chain is capped, and every value still goes
through ``postroom.mime.build.build_message``, which refuses control characters in any header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db.models import F

from postroom.conversations.models import Conversation, Direction, Message
from postroom.conversations.selectors import messages_visible
from postroom.core.blobs import blob_get
from postroom.mailboxes.models import Mailbox
from postroom.mime.parse import ParsedMessage, Quarantined, parse_message
from postroom.orgs.models import Membership
from postroom.outbox.models import OutgoingKind

_PLAIN_MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}@[!-;=?-~]{1,250}>")
_REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|tr|wg)\s*:", re.IGNORECASE)
# RFC 5322 3.6.4 lets a client shorten References; the first (thread root) and the most recent
# ones are what threading needs, and a hostile chain must not grow every reply without bound.
MAX_REFERENCES = 20


@dataclass(frozen=True)
class Draft:
    """The starting point of a composer, and the threading headers the action will use."""

    to: list[tuple[str, str]] = field(default_factory=list)
    cc: list[tuple[str, str]] = field(default_factory=list)
    subject: str = ""
    quote: str = ""
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    original: Message | None = None


def last_message(conversation: Conversation, actor: Membership) -> Message | None:
    visible = messages_visible(actor=actor).filter(conversation=conversation)
    return visible.order_by(F("sent_at").desc(nulls_last=True), "-created_at").first()


def _parsed(message: Message) -> ParsedMessage | None:
    parsed = parse_message(blob_get(message.key_scope(), message.raw_blob))
    return None if isinstance(parsed, Quarantined) else parsed


def _plain_ids(identifiers: tuple[str, ...] | list[str]) -> list[str]:
    return [identifier for identifier in identifiers if _PLAIN_MESSAGE_ID.fullmatch(identifier)]


def _without(addresses: list[tuple[str, str]], excluded: set[str]) -> list[tuple[str, str]]:
    """``addresses`` minus ``excluded`` and minus repeats, compared case-insensitively."""
    seen = set(excluded)
    kept: list[tuple[str, str]] = []
    for name, address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append((name, address))
    return kept


def subject_for(kind: str, subject: str) -> str:
    if kind in (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL):
        return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"
    if kind == OutgoingKind.FORWARD:
        return subject if _FORWARD_PREFIX.match(subject) else f"Fwd: {subject}"
    return subject


def _quote(parsed: ParsedMessage, kind: str) -> str:
    body = parsed.body
    text = (body.text or "") if not isinstance(body, Quarantined) else ""
    sender = parsed.from_[0] if parsed.from_ else None
    who = f"{sender.display_name} <{sender.address}>" if sender and sender.display_name else (sender.address if sender else "")
    if kind == OutgoingKind.FORWARD:
        header = ["---------- Forwarded message ----------", f"From: {who}", f"Subject: {parsed.subject}"]
        if parsed.date is not None:
            header.append(f"Date: {parsed.date:%Y-%m-%d %H:%M %z}")
        return "\n".join([*header, "", text])
    quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
    return f"{who} wrote:\n{quoted}" if who else quoted


def draft_for(*, actor: Membership, mailbox: Mailbox, conversation: Conversation | None, kind: str) -> Draft:
    """Recipients, subject and threading headers for ``kind`` on ``conversation``'s last message.

    Reply goes to Reply-To (else From) of the last message, or, when that message is our own,
    to its recipients; reply-all adds its To and Cc; the mailbox's own address is never among
    the recipients. A forward keeps References (so the forward threads with the original in
    Postroom) but has no In-Reply-To: it is not an answer to the original's sender.
    """
    if kind == OutgoingKind.NEW or conversation is None:
        return Draft()
    original = last_message(conversation, actor)
    if original is None:
        return Draft(subject=subject_for(kind, conversation.subject or ""))
    parsed = _parsed(original)
    if parsed is None:  # a quarantined message: nothing of it can be trusted to build headers from
        return Draft(subject=subject_for(kind, original.subject or conversation.subject or ""), original=original)
    references = _plain_ids([*parsed.references])
    message_id = parsed.message_id if parsed.message_id and _PLAIN_MESSAGE_ID.fullmatch(parsed.message_id) else None
    if message_id is not None and message_id not in references:
        references.append(message_id)
    if len(references) > MAX_REFERENCES:
        references = [references[0], *references[-(MAX_REFERENCES - 1) :]]
    own = {mailbox.email_address.lower()}
    to: list[tuple[str, str]] = []
    cc: list[tuple[str, str]] = []
    if kind in (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL):
        if original.direction == Direction.OUTBOUND:
            to = _without([tuple(pair) for pair in parsed.to], own)  # type: ignore[misc]
        else:
            to = _without([tuple(pair) for pair in (parsed.reply_to or parsed.from_)], own)  # type: ignore[misc]
        if kind == OutgoingKind.REPLY_ALL:
            others = [*parsed.to, *parsed.cc] if original.direction == Direction.INBOUND else [*parsed.cc]
            cc = _without([tuple(pair) for pair in others], own | {address.lower() for _, address in to})  # type: ignore[misc]
    return Draft(
        to=to,
        cc=cc,
        subject=subject_for(kind, parsed.subject),
        quote=_quote(parsed, kind),
        in_reply_to=message_id if kind != OutgoingKind.FORWARD else None,
        references=references,
        original=original,
    )
