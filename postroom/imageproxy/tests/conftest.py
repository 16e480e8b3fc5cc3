"""Messages with remote, tracking and inline images, delivered to Alice's mailbox."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Message
from postroom.conversations.tests.conftest import inbox_of
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.testing.web_peers import PNG_PIXEL


def build_rich_raw(
    html: str,
    *,
    sender: str = "Dana Customer <dana@customer.example>",
    message_id: str = "<rich@customer.example>",
    inline: tuple[tuple[str, str, bytes], ...] = (("logo@customer.example", "image/png", PNG_PIXEL),),
) -> bytes:
    """A multipart/alternative message whose HTML part is multipart/related with ``inline``
    parts, each (Content-ID without brackets, type, content)."""
    message = EmailMessage()
    message["Subject"] = "Our spring catalogue"
    message["From"] = sender
    message["To"] = "alice@acme.test"
    message["Message-ID"] = message_id
    message.set_content("Our spring catalogue (HTML)")
    message.add_alternative(html, subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    for content_id, content_type, content in inline:
        maintype, subtype = content_type.split("/")
        html_part.add_related(content, maintype=maintype, subtype=subtype, cid=f"<{content_id}>")
    return message.as_bytes()


def deliver(mailbox: Mailbox, raw: bytes, uid: int = 1) -> Message:
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw).message


@pytest.fixture
def alice_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.alice_membership, address="alice@acme.test")


@pytest.fixture
def bob_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.bob_membership, address="bob@acme.test")
