"""Members' changes to their mail, carried to the IMAP server by a background task.

A member's action (``postroom.conversations.actions``) changes the local copy in its transaction
and, after the commit, queues one ``copy_propagate`` per copy; the IMAP session runs here, never
inside a transaction or a request. A failure that a later attempt may cure (server unreachable,
connection lost, a token endpoint that did not answer, the mailbox waiting to be reconnected)
queues the task again with backoff; the local state is left as the member set it either way.
A change the server can no longer take (the folder was renumbered, there is no Archive folder,
the server can neither MOVE nor expunge a single UID) is logged and dropped: retrying would not
help, and the next sync shows the server's state.
"""

from __future__ import annotations

import imaplib
import logging
from datetime import timedelta

from django.utils import timezone
from django_tasks import task
from imapclient.exceptions import IMAPClientError

from postroom.conversations.models import MessageCopy
from postroom.mailboxes.connection import MailConnectionError
from postroom.mailboxes.models import FolderRole
from postroom.mailboxes.oauth import OAuthError
from postroom.mailboxes.protocol_values import UnsafeProtocolValue
from postroom.sync.engine import FolderChanged, MissingFolder, MoveUnsupported, copy_move, copy_set_seen


class CopyChange:
    SEEN = "seen"
    UNSEEN = "unseen"
    ARCHIVE = "archive"
    TRASH = "trash"
    JUNK = "junk"
    INBOX = "inbox"


_MOVE_ROLES = {
    CopyChange.ARCHIVE: FolderRole.ARCHIVE, CopyChange.TRASH: FolderRole.TRASH, CopyChange.JUNK: FolderRole.JUNK,
    CopyChange.INBOX: FolderRole.INBOX,
}  # fmt: skip
CHANGES = frozenset({CopyChange.SEEN, CopyChange.UNSEEN, *_MOVE_ROLES})
# Waits after the 1st, 2nd, … failed attempt: about a day in all, long enough for a member to
# reconnect a mailbox whose grant was revoked.
RETRY_DELAYS = (
    timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4), timedelta(hours=18),
)  # fmt: skip
RETRYABLE = (MailConnectionError, OAuthError, imaplib.IMAP4.error, IMAPClientError, OSError)
UNRECOVERABLE = (FolderChanged, MissingFolder, MoveUnsupported, UnsafeProtocolValue)

logger = logging.getLogger(__name__)


def copy_change_apply(copy_id: int, change: str, attempt: int = 1) -> None:
    if change not in CHANGES:
        raise ValueError(f"unknown change {change!r}")
    copy = MessageCopy.objects.select_related("mailbox", "folder").filter(pk=copy_id).first()
    if copy is None:
        return  # the mailbox was removed meanwhile
    try:
        if change in _MOVE_ROLES:
            copy_move(copy, _MOVE_ROLES[change])
        elif copy.seen_pending == (change == CopyChange.SEEN):
            copy_set_seen(copy, copy.seen_pending)
        # else: a newer read/unread choice is pending (its own task applies it) or this one is
        # already confirmed; applying this older value now could reorder the member's choices.
    except UNRECOVERABLE as error:
        logger.warning("copy %s: %s not applied on the server (%s)", copy_id, change, type(error).__name__)
    except RETRYABLE as error:
        if attempt > len(RETRY_DELAYS):
            logger.warning("copy %s: %s given up after %d attempts (%s)", copy_id, change, attempt, type(error).__name__)
            return
        logger.info("copy %s: %s failed (%s); retrying", copy_id, change, type(error).__name__)
        copy_propagate.using(run_after=timezone.now() + RETRY_DELAYS[attempt - 1]).enqueue(copy_id, change, attempt + 1)


@task(queue_name="default")
def copy_propagate(copy_id: int, change: str, attempt: int = 1) -> None:
    copy_change_apply(copy_id, change, attempt)
