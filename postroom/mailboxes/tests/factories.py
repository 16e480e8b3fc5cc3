"""Stored mailboxes for tests that need no mail server behind them."""

from __future__ import annotations

from typing import Any

from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership

STORED_PASSWORD = "a stored password"


def make_mailbox(owner: Membership, *, address: str = "someone@postroom.test", **fields: Any) -> Mailbox:
    mailbox = Mailbox(
        organization_id=owner.organization_id, owner=owner, name=address, email_address=address,
        imap_host="localhost", imap_port=993, smtp_host="localhost", smtp_port=465, **fields,
    )
    mailbox.credentials = {"username": address, "password": STORED_PASSWORD}
    mailbox.save()
    return mailbox
