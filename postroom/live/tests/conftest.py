"""The cast's mailboxes, a way to deliver mail into them, and a fast, clean bus for each test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from django.db import connections

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Conversation
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.live.hub import existing_hub
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.testing.aio import run_in_fresh_loop


@pytest.fixture(autouse=True)
def _live_settings(settings: Any) -> Iterator[None]:
    settings.LIVE_BUS = "database"
    settings.LIVE_POLL_SECONDS = 0.02
    # Requests run on threads of their own under ASGI: each must close its connection when it
    # ends, or PostgreSQL keeps the test database busy at the end of the session.
    database = connections.settings["default"]
    kept = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    yield
    database["CONN_MAX_AGE"] = kept


@pytest.fixture
def alice_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.alice_membership, address="alice@acme.test")


@pytest.fixture
def bob_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.bob_membership, address="bob@acme.test")


@pytest.fixture
def charlie_mailbox(cast: Cast) -> Mailbox:
    return make_mailbox(cast.charlie_membership, address="charlie@beta.test")


_uids: dict[Any, int] = {}


def deliver(mailbox: Mailbox, *, subject: str | None = None, message_id: str | None = None) -> Conversation:
    """Store a new message, in a conversation of its own, in the mailbox's INBOX (committed, as
    the sync service does)."""
    uid = _uids[mailbox.pk] = _uids.get(mailbox.pk, 0) + 1
    raw = build_raw(
        subject=subject or f"Order {mailbox.pk}-{uid} never arrived",
        to=mailbox.email_address,
        message_id=message_id or f"<{mailbox.pk}.{uid}@customer.example>",
    )
    copy = message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw)
    return copy.message.conversation


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async scenario in a fresh event loop, then stop the hub it started."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            hub = existing_hub()
            if hub is not None:
                await hub.close()

    run_in_fresh_loop(main())
