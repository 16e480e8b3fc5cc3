"""Mailboxes for the cast (Alice's and Bob's, in organization A; Charlie's in B), a message builder,
and a team inbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Message
from postroom.mailboxes.actions import mailbox_team_set
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.orgs.actions import team_create, team_member_add
from postroom.orgs.models import Team


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


# --- The team inbox: Alice's mailbox is the Support team's mailbox (Alice and Bob are in Support,
# Carol is not); Alice also has a personal mailbox whose mail stays private to her. ---------------
@dataclass
class TeamInbox:
    team: Team
    mailbox: Mailbox
    private_mailbox: Mailbox
    uid: int = 0

    def deliver(self, mailbox: Mailbox | None = None, **raw: object) -> Message:
        """A message delivered to the team mailbox (or ``mailbox``), as sync would store it."""
        self.uid += 1
        raw.setdefault("message_id", f"<m{self.uid}@customer.example>")
        target = mailbox or self.mailbox
        return message_ingest(mailbox=target, folder=inbox_of(target), uidvalidity=7, uid=self.uid, raw=build_raw(**raw)).message  # type: ignore[arg-type]


@pytest.fixture
def team_inbox(cast: Cast, alice_mailbox: Mailbox) -> TeamInbox:
    team = team_create(actor=cast.alice_membership, name="Support")
    team_member_add(actor=cast.alice_membership, team=team, membership=cast.alice_membership)
    team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    mailbox_team_set(actor=cast.alice_membership, mailbox=alice_mailbox, team=team)
    private = make_mailbox(cast.alice_membership, address="alice.private@acme.test")
    return TeamInbox(team=team, mailbox=alice_mailbox, private_mailbox=private)
