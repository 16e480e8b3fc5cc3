"""The outbox's constant query for the conversation page, against the ORM's selector."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.conftest import Cast
from postroom.conversations.tests.conftest import TeamInbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.outbox import actions, selectors

pytestmark = pytest.mark.django_db


def test_conversation_outgoing_matches_the_orm(cast: Cast, team_inbox: TeamInbox) -> None:
    """The member's own outgoing messages of one conversation, newest first, with their mailboxes;
    not a teammate's, not another conversation's."""
    conversation = team_inbox.deliver(subject="Where is my order?").conversation
    other = team_inbox.deliver(subject="Another one", message_id="<other@customer.example>").conversation
    second = make_mailbox(cast.alice_membership, address="alice.second@acme.test")
    bobs = make_mailbox(cast.bob_membership, address="bob@acme.test")
    to = [("Dana", "dana@customer.example")]
    for mailbox, where in ((team_inbox.mailbox, conversation), (second, conversation), (team_inbox.mailbox, other), (second, conversation)):
        actions.outgoing_create(actor=cast.alice_membership, mailbox=mailbox, kind="reply", conversation=where, to=to, subject="Re", text="On its way")
    actions.outgoing_create(actor=cast.bob_membership, mailbox=bobs, kind="reply", conversation=conversation, to=to, subject="Re", text="Me too")

    for member in (cast.alice_membership, cast.bob_membership):
        expected = list(selectors.outgoing_messages(actor=member, conversation=conversation))
        found = selectors.conversation_outgoing(actor=member, conversation=conversation)
        with CaptureQueriesContext(connection) as captured:
            shown = [(item.pk, item.status, item.mailbox.pk, item.mailbox.email_address, item.envelope) for item in found]
        assert not captured.captured_queries
        assert shown == [(item.pk, item.status, item.mailbox.pk, item.mailbox.email_address, item.envelope) for item in expected]
    assert len(selectors.conversation_outgoing(actor=cast.alice_membership, conversation=conversation)) == 3
    assert len(selectors.conversation_outgoing(actor=cast.bob_membership, conversation=conversation)) == 1
