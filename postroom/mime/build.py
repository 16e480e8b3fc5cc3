"""Build outgoing messages that say exactly what the member wrote, and nothing an attacker slipped in.

Threat model: the fields of an outgoing message come from members, from the message being
replied to (its subject, its addresses, its Message-IDs), from canned responses and from booking
forms, so some of them are attacker-written. A CR or LF in any header value or address would let
that text add headers (``Subject: x\\r\\nBcc: victim@...``), start the body early, or, through
the SMTP envelope, add recipients (FreeScout CVE-2025-48388, Roundcube 1.7.4's bare-CR bug).

Defences:
- Every header value, display name and address is checked before use: CR, LF, NUL and every other
  control character except tab (and Unicode line separators, which Python's header code also
  splits on) are refused with a ``ValueError`` naming the field. We refuse rather than strip, so
  a caller can never send a silently different message than the one shown to the member.
- Addresses must be plain ASCII ``local@domain`` (internationalised domains are converted to
  IDNA) and must read back as exactly one address under the strict address-list rules of
  ``postroom.mime.addresses``.
- The message is built with ``email.message.EmailMessage`` and ``policy.SMTP``, which encodes
  non-ASCII text (RFC 2047 words, RFC 2231 parameters) and folds lines with CRLF.
- Bcc recipients are kept on the message object only, never in a header;
  ``envelope_recipients`` gives the SMTP envelope exactly To + Cc + Bcc, deduplicated.
- Our own Message-ID under our domain; References/In-Reply-To must be well-formed msg-ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, make_msgid

from postroom.mime.addresses import Mailbox, split_address_field
from postroom.mime.filenames import safe_filename

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
# Set by build_message itself; extra_headers may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "bcc", "cc", "content-disposition", "content-transfer-encoding", "content-type", "date", "from",
        "in-reply-to", "message-id", "mime-version", "references", "subject", "to",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes


class OutgoingMessage(EmailMessage):
    """An ``EmailMessage`` that also carries its Bcc recipients, which never appear in a header."""

    blind_recipients: tuple[str, ...] = ()


def _checked(value: str, field: str) -> str:
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError(f"{field} contains a line break, NUL or other control character, which a mail header cannot carry")
    return value


def _checked_address(mailbox: tuple[str, str], field: str) -> Address:
    display_name, address = mailbox
    _checked(display_name, f"{field} display name")
    _checked(address, f"{field} address")
    local_part, at, domain = address.strip().rpartition("@")
    if not at or not local_part or not domain:
        raise ValueError(f"{field} address {address!r} is not of the form name@domain")
    if not local_part.isascii():
        raise ValueError(f"{field} address {address!r} has a non-ASCII local part, which needs SMTPUTF8")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise ValueError(f"{field} address {address!r} has an invalid domain") from error
    if not _LOCAL_PART.fullmatch(local_part) or not _HOSTNAME.fullmatch(ascii_domain):
        raise ValueError(f"{field} address {address!r} is not a plain email address")
    addr_spec = f"{local_part}@{ascii_domain}"
    read_back = split_address_field(formataddr((display_name, addr_spec)))
    if read_back is None or [pair[1] for pair in read_back] != [addr_spec]:
        raise ValueError(f"{field} display name {display_name!r} makes the address ambiguous")
    return Address(display_name=display_name, addr_spec=addr_spec)


def _checked_message_id(value: str, field: str) -> str:
    value = _checked(value, field).strip()
    if not _MESSAGE_ID.fullmatch(value):
        raise ValueError(f"{field} {value!r} is not a message id of the form <id@domain>")
    return value


def _add_attachment(message: EmailMessage, attachment: OutgoingAttachment) -> None:
    content_type = attachment.content_type.strip().lower()
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"attachment content type {attachment.content_type!r} is not of the form type/subtype")
    filename = safe_filename(attachment.filename, content_type)
    maintype, subtype = content_type.split("/")
    if content_type == "message/rfc822":
        # RFC 2046 forbids base64 for message/rfc822: attach it as a message, not as bytes.
        message.add_attachment(BytesParser(policy=policy.SMTP).parsebytes(attachment.content), filename=filename)
    else:
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=filename)


def build_message(
    *,
    from_: Mailbox | tuple[str, str],
    to: Sequence[Mailbox | tuple[str, str]],
    cc: Sequence[Mailbox | tuple[str, str]] = (),
    bcc: Sequence[Mailbox | tuple[str, str]] = (),
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[OutgoingAttachment] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    message_id_domain: str,
    extra_headers: Mapping[str, str] | None = None,
) -> OutgoingMessage:
    """A MIME message ready for ``as_bytes()`` (policy.SMTP); raises ValueError on unsafe input."""
    if not _HOSTNAME.fullmatch(message_id_domain):
        raise ValueError(f"message_id_domain {message_id_domain!r} is not a host name")
    sender = _checked_address(from_, "From")
    to_addresses = [_checked_address(mailbox, "To") for mailbox in to]
    cc_addresses = [_checked_address(mailbox, "Cc") for mailbox in cc]
    bcc_addresses = [_checked_address(mailbox, "Bcc") for mailbox in bcc]
    if not (to_addresses or cc_addresses or bcc_addresses):
        raise ValueError("a message needs at least one recipient")
    extra = {_checked(name, "header name"): _checked(value, f"{name} header") for name, value in (extra_headers or {}).items()}
    for name in extra:
        if not _HEADER_NAME.fullmatch(name) or name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{name!r} cannot be set as an extra header")

    message = OutgoingMessage(policy=policy.SMTP)
    message["From"] = sender
    if to_addresses:
        message["To"] = to_addresses
    if cc_addresses:
        message["Cc"] = cc_addresses
    message["Subject"] = _checked(subject, "Subject")
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=message_id_domain)
    if in_reply_to is not None:
        message["In-Reply-To"] = _checked_message_id(in_reply_to, "In-Reply-To")
    if references:
        message["References"] = " ".join(_checked_message_id(reference, "References") for reference in references)
    for name, value in extra.items():
        message[name] = value
    # Quoted-printable keeps the message 7-bit clean for servers without 8BITMIME.
    message.set_content(text, cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", cte="quoted-printable")
    for attachment in attachments:
        _add_attachment(message, attachment)
    message.blind_recipients = tuple(address.addr_spec for address in bcc_addresses)
    return message


def envelope_recipients(message: OutgoingMessage) -> list[str]:
    """The SMTP ``RCPT TO`` list: exactly To + Cc + Bcc, each address once (compared case-insensitively)."""
    addresses: list[str] = []
    for field in ("To", "Cc"):
        header = message[field]
        if header is not None:
            addresses.extend(address.addr_spec for address in header.addresses)
    addresses.extend(message.blind_recipients)
    unique: dict[str, str] = {}
    for address in addresses:
        unique.setdefault(address.lower(), address)
    return list(unique.values())
