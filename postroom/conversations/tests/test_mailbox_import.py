"""postroom import-mailbox: mbox and Maildir, resumable after an interruption, with a progress bar."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from postroom.audit.models import AuditEvent
from postroom.conversations.mailbox_import import ProgressBar, import_mailbox_file, import_uidvalidity
from postroom.conversations.models import Message, MessageCopy
from postroom.conversations.tests.conftest import build_raw
from postroom.mailboxes.models import Mailbox

pytestmark = pytest.mark.django_db

COUNT = 12


def _messages() -> list[bytes]:
    start = datetime(2025, 1, 1, 8, 0).astimezone()
    return [
        build_raw(
            subject=f"Message {number}",
            message_id=f"<m{number}@takeout.example>",
            text=f"Number {number}\n",
            date=start + timedelta(hours=number),
        )
        for number in range(COUNT)
    ]


@pytest.fixture
def mbox_path(tmp_path: Path) -> Path:
    path = tmp_path / "All mail Including Spam and Trash.mbox"
    box = stdlib_mailbox.mbox(path)
    for index, raw in enumerate(_messages()):
        message = stdlib_mailbox.mboxMessage(raw)
        if index == 0:
            message.set_flags("RA")
        box.add(message)
    box.close()
    return path


@pytest.fixture
def maildir_path(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    box = stdlib_mailbox.Maildir(path)
    for index, raw in enumerate(_messages()):
        message = stdlib_mailbox.MaildirMessage(raw)
        message.set_subdir("cur")
        if index == 0:
            message.set_flags("FS")
        box.add(message)
    box.close()
    return path


class ImportInterruptedError(Exception):
    pass


def _interrupt_after(count: int):  # type: ignore[no-untyped-def]
    def progress(done: int, total: int) -> None:
        if done == count:
            raise ImportInterruptedError

    return progress


def test_an_mbox_is_imported_with_its_flags(alice_mailbox: Mailbox, mbox_path: Path) -> None:
    result = import_mailbox_file(alice_mailbox, mbox_path)
    assert (result.total, result.imported, result.skipped) == (COUNT, COUNT, 0)
    assert result.folder.name == "Imported/All mail Including Spam and Trash.mbox"
    assert result.folder.uidvalidity == import_uidvalidity(mbox_path)
    copies = MessageCopy.objects.filter(folder=result.folder).order_by("uid")
    assert list(copies.values_list("uid", flat=True)) == list(range(1, COUNT + 1))
    assert copies[0].seen
    assert copies[0].answered
    assert not copies[1].seen
    assert copies[0].message.subject == "Message 0"
    assert Message.objects.count() == COUNT


def test_an_interrupted_mbox_import_resumes_without_duplicates(alice_mailbox: Mailbox, mbox_path: Path) -> None:
    with pytest.raises(ImportInterruptedError):
        import_mailbox_file(alice_mailbox, mbox_path, _interrupt_after(5))
    assert MessageCopy.objects.count() == 5
    result = import_mailbox_file(alice_mailbox, mbox_path)
    assert (result.imported, result.skipped) == (COUNT - 5, 5)
    assert MessageCopy.objects.count() == COUNT
    assert Message.objects.count() == COUNT
    again = import_mailbox_file(alice_mailbox, mbox_path)
    assert (again.imported, again.skipped) == (0, COUNT)
    assert MessageCopy.objects.count() == COUNT


def test_a_maildir_is_imported_and_resumed(alice_mailbox: Mailbox, maildir_path: Path) -> None:
    with pytest.raises(ImportInterruptedError):
        import_mailbox_file(alice_mailbox, maildir_path, _interrupt_after(7))
    result = import_mailbox_file(alice_mailbox, maildir_path)
    assert (result.imported, result.skipped) == (COUNT - 7, 7)
    assert Message.objects.count() == COUNT
    # Maildir keys sort by time, and within one second not in the order they were written:
    # find the flagged message by its subject, not by its UID.
    first = next(copy for copy in MessageCopy.objects.filter(folder=result.folder).select_related("message") if copy.message.subject == "Message 0")
    assert first.seen
    assert first.flagged


def test_mail_already_synced_is_not_stored_twice(alice_mailbox: Mailbox, bob_mailbox: Mailbox, mbox_path: Path) -> None:
    import_mailbox_file(bob_mailbox, mbox_path)
    import_mailbox_file(alice_mailbox, mbox_path)
    assert Message.objects.count() == COUNT
    assert MessageCopy.objects.count() == 2 * COUNT


def test_the_command_reports_progress_and_audits(alice_mailbox: Mailbox, mbox_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = StringIO()
    call_command("import_mailbox", str(mbox_path), mailbox=str(alice_mailbox.pk), stdout=output)
    assert f"{COUNT} message(s) imported" in output.getvalue()
    assert f"{COUNT}/{COUNT}" in capsys.readouterr().err
    event = AuditEvent.objects.get(action="mailbox.file_imported")
    assert event.details["imported"] == COUNT


def test_the_command_refuses_unknown_mailboxes_and_paths(alice_mailbox: Mailbox, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no mailbox"):
        call_command("import_mailbox", str(tmp_path), mailbox="not-a-uuid")
    with pytest.raises(CommandError, match="not a Maildir"):
        call_command("import_mailbox", str(tmp_path), mailbox=str(alice_mailbox.pk))


def test_the_progress_bar_shows_count_rate_and_time_left() -> None:
    lines: list[str] = []
    ticks = iter([0.0, 0.0, 1.0, 2.0, 10.0])
    bar = ProgressBar(lines.append, clock=lambda: next(ticks))
    bar(1, 100)
    bar(11, 100)
    bar(21, 100)
    assert "21/100" in lines[-1]
    assert "10.0 msg/s" in lines[-1]
    assert "7s left" in lines[-1]
    bar(100, 100)
    assert lines[-1].endswith("\n")
    assert "done" in lines[-1]
