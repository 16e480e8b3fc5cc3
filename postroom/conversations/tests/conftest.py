"""Mailboxes for the cast (Alice's and Bob's, in organization A; Charlie's in B) and a message builder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from postroom.conftest import Cast
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.tests.factories import make_mailbox


def inbox_of(mailbox: Mailbox) -> Folder:
    return Folder.objects.get_or_create(mailbox=mailbox, name="INBOX", defaults={"role": FolderRole.INBOX, "uidvalidity": 7})[0]


@pytest.fixture
def alice_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.alice_membership, address="alice@acme.test")


@pytest.fixture
def bob_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.bob_membership, address="bob@acme.test")


@pytest.fixture
def charlie_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.charlie_membership, address="charlie@beta.test")


def build_raw(
    *,
    subject: str = "Order 1234 never arrived",
    sender: str = "Dana Customer <dana@customer.example>",
    to: str = "alice@acme.test",
    cc: str | None = None,
    message_id: str | None = "<first@customer.example>",
    in_reply_to: str | None = None,
    references: str | None = None,
    date: datetime | None = None,
    text: str = "Hello,\nmy order never arrived.\n",
    html: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    message["Date"] = format_datetime(date or datetime(2026, 3, 2, 9, 30).astimezone())
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


@pytest.fixture
def raw_message() -> Callable[..., bytes]:
    return build_raw
