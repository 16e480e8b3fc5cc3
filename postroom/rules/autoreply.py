"""When an automatic reply may be sent (RFC 3834), for the auto-reply action of rules.

The action itself waits for canned responses (its body is a response); these checks are the
part that keeps auto-replies from flooding or looping, and they are in place first:

- never to mail that is itself automatic or bulk: ``Auto-Submitted`` other than ``no``,
  ``Precedence: bulk/junk/list``, any ``List-Id``/``List-Unsubscribe``, ``X-Auto-Response-Suppress``,
  an empty or missing ``Return-Path`` (bounces), senders such as ``mailer-daemon`` and
  ``postmaster`` or ``noreply`` addresses;
- never to our own addresses (a mailbox of the organization), so two rules cannot ping-pong;
- at most once per rule, sender and day (``AutoReplySent``, keyed by a blind index of the address).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from email.message import Message as EmailMessage
from email.utils import parseaddr

from django.db import IntegrityError, transaction

from postroom.core.keys import keyring, org_scope
from postroom.rules.models import AutoReplySent, Rule

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
