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
    """``make_mailbox(user, owner=None, **fields)``: a saved Mailbox that signs in to Dovecot as ``user``."""

    def make(user: MailUser, owner: Membership | None = None, **fields: Any) -> Mailbox:
        owner = owner or cast(Membership, MembershipFactory())
        values: dict[str, Any] = {
            "imap_host": dovecot.host,
            "imap_port": dovecot.imaps_port,
            "imap_tls": TlsModeChoice.IMPLICIT,
            "smtp_host": dovecot.host,
            "smtp_port": 25,
            "private_ca_pem": dovecot.ca_pem,
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
                organization=owner.organization,
                owner=owner,
                name=f"box {number}",
                email_address=f"box{number}@example.test",
                imap_host="localhost",
                imap_port=993,
                smtp_host="localhost",
                smtp_port=465,
            )
            mailbox.credentials = {"username": f"box{number}", "password": "unused"}
            mailbox.save()
            mailboxes.append(mailbox)
        return mailboxes

    return make
