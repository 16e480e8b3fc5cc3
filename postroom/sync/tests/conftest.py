"""Mailboxes on the test Dovecot for the sync tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from postroom.mailboxes.models import AuthKind, Mailbox, TlsModeChoice
from postroom.orgs.models import Membership
from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.factories import MembershipFactory


@pytest.fixture
def make_mailbox(db: None, dovecot: Dovecot) -> Callable[..., Mailbox]:
    """``make_mailbox(user, owner=None, server=None, **fields)``: a saved Mailbox that signs in as
    ``user`` to ``server`` (the session's Dovecot unless given)."""

    def make(user: MailUser, owner: Membership | None = None, server: Dovecot | None = None, **fields: Any) -> Mailbox:
        owner = owner or cast(Membership, MembershipFactory())
        server = server or dovecot
        values: dict[str, Any] = {
            "imap_host": server.host,
            "imap_port": server.imaps_port,
            "imap_tls": TlsModeChoice.IMPLICIT,
            "smtp_host": server.host,
            "smtp_port": 25,
            "private_ca_pem": server.ca_pem,
            "auth_kind": AuthKind.PASSWORD,
        }
        mailbox = Mailbox(organization=owner.organization, owner=owner, name=user.name, email_address=user.address, **(values | fields))
        mailbox.credentials = {"username": user.name, "password": user.password}
        mailbox.save()
        return mailbox

    return make


@pytest.fixture
def idle_mailboxes(db: None) -> Callable[[int], list[Mailbox]]:
    """``idle_mailboxes(n)``: mailboxes that point nowhere, for lease tests that never connect."""

    def make(count: int) -> list[Mailbox]:
        owner = cast(Membership, MembershipFactory())
        mailboxes = []
        for number in range(count):
            mailbox = Mailbox(
                organization=owner.organization, owner=owner, name=f"box {number}", email_address=f"box{number}@example.test",
                imap_host="localhost", imap_port=993, smtp_host="localhost", smtp_port=465,
            )
            mailbox.credentials = {"username": f"box{number}", "password": "unused"}
            mailbox.save()
            mailboxes.append(mailbox)
        return mailboxes

    return make
