"""Mailboxes for the cast and helpers to store sent and received mail (see conversations' conftest)."""

from __future__ import annotations

from typing import Any

from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Direction, Message
from postroom.conversations.tests.conftest import alice_mailbox, bob_mailbox, build_raw, charlie_mailbox, inbox_of  # noqa: F401
from postroom.mailboxes.models import Folder, FolderRole, Mailbox


def sent_of(mailbox: Mailbox) -> Folder:
    return Folder.objects.get_or_create(mailbox=mailbox, name="Sent", defaults={"role": FolderRole.SENT, "uidvalidity": 9})[0]


_uids: dict[int, int] = {}


def store(mailbox: Mailbox, *, outbound: bool = False, **fields: Any) -> Message:
    """Store a message in the mailbox's INBOX (or Sent, as sent mail) with the next UID."""
    folder = sent_of(mailbox) if outbound else inbox_of(mailbox)
    uid = _uids[folder.pk] = _uids.get(folder.pk, 0) + 1
    direction = Direction.OUTBOUND if outbound else Direction.INBOUND
    return message_ingest(
        mailbox=mailbox, folder=folder, uidvalidity=folder.uidvalidity or 1, uid=uid, raw=build_raw(**fields), direction=direction
    ).message
