"""SECURITY.md R40: comments never leave Postroom. A comment carrying a canary, then a reply,
a reply-all and a forward through the outbox to a real SMTP peer (aiosmtpd): no byte of what
the peer receives holds the canary. And no module that builds outgoing mail (or, later,
tracking or customer exports) reads comments at all."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import pytest

from postroom.comments import actions
from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.core.tests.processes import REPOSITORY
from postroom.mailboxes.models import Mailbox
from postroom.outbox import actions as outbox_actions
from postroom.outbox.models import OutgoingKind
from postroom.outbox.tests.conftest import conversation, mailbox, run_due  # noqa: F401 (fixtures)
from postroom.testing.smtp import SmtpPeer

pytestmark = pytest.mark.django_db

CANARY = "canary-internal-note-4c1d"
# Packages whose output reaches people outside the organization.
OUTWARD_PACKAGES = ("outbox", "mime", "tracking", "exports")


def test_r40_a_comment_never_reaches_outgoing_mail(
    cast: Cast, mailbox: Mailbox, conversation: Conversation, smtp_peer_requiring_auth: SmtpPeer,  # noqa: F811
    run_due: Callable[[], int], django_capture_on_commit_callbacks: Any,  # noqa: F811
) -> None:  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        actions.comment_create(
            actor=cast.alice_membership, conversation=conversation, body=f"Internal: refund him, {CANARY}",
            attachments=[actions.Upload(filename=f"{CANARY}.txt", content_type="text/plain", content=CANARY.encode())],
        )  # fmt: skip
    for kind in (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL, OutgoingKind.FORWARD):
        with django_capture_on_commit_callbacks(execute=True):
            outbox_actions.outgoing_create(
                actor=cast.alice_membership, mailbox=mailbox, kind=kind, conversation=conversation,
                to=[("Dana Customer", "dana@customer.example")], subject="", text="Your refund is on its way.\n",
            )  # fmt: skip
    assert run_due() == 3
    received = smtp_peer_requiring_auth.messages
    assert len(received) == 3
    for message in received:
        assert b"Your refund is on its way." in message.content  # the peer really got our mail
        assert CANARY.encode() not in message.content
        assert b"Internal: refund him" not in message.content


def test_r40_nothing_that_sends_mail_reads_comments() -> None:
    offenders = []
    for package in OUTWARD_PACKAGES:
        folder = REPOSITORY / "postroom" / package
        for path in folder.rglob("*.py") if folder.exists() else ():
            if "tests" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [f"{path.relative_to(REPOSITORY)}: {name}" for name in names if name.startswith("postroom.comments")]
    assert not offenders, offenders
