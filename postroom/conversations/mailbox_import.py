"""Import an mbox file (a Google Takeout export, Thunderbird's local folders) or a Maildir into a mailbox.

The file becomes a synthetic folder of the mailbox, "Imported/<file name>", whose UIDVALIDITY is
derived from the file's absolute path and whose UIDs are the messages' positions (1-based):
``message_ingest`` is idempotent by (folder, UIDVALIDITY, UID), so an interrupted import run
again resumes where it stopped and a finished one run again stores nothing twice. Positions are
stable as long as the file only grows (mbox appends; Maildir names sort by delivery time).
Messages already in the organization from a synced mailbox are deduplicated by ``message_ingest``.

The file is read by the standard library's ``mailbox`` module, one message at a time, so memory
stays flat whatever the file's size; a message that cannot be read whole is quarantined by the
ingest like any other broken message.
"""

from __future__ import annotations

import hashlib
import mailbox as stdlib_mailbox
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import MessageCopy
from postroom.mailboxes.models import Folder, FolderRole, Mailbox

Source = stdlib_mailbox.Maildir | stdlib_mailbox.mbox
# (done, total) after each message, skipped ones included.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportResult:
    folder: Folder
    total: int
    imported: int
    skipped: int


def import_uidvalidity(path: Path) -> int:
    """A stable 32-bit UIDVALIDITY for the file at ``path`` (IMAP's are non-zero 32-bit numbers)."""
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "big") or 1


def _open(path: Path) -> Source:
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ValueError(f"{path} is a directory but not a Maildir (no cur/ or new/)")
        return stdlib_mailbox.Maildir(path, factory=None, create=False)
    if not path.is_file():
        raise ValueError(f"{path} is neither an mbox file nor a Maildir")
    return stdlib_mailbox.mbox(path, factory=None, create=False)


def _flags(source: Source, key: str) -> list[str]:
    message = source.get_message(key)
    letters = message.get_flags() if isinstance(message, stdlib_mailbox.MaildirMessage | stdlib_mailbox.mboxMessage) else ""
    is_maildir = isinstance(message, stdlib_mailbox.MaildirMessage)
    names = {"S" if is_maildir else "R": "\\Seen", "F": "\\Flagged", "R" if is_maildir else "A": "\\Answered"}
    return [flag for letter, flag in names.items() if letter in letters]


def _keys(source: Source) -> list[str]:
    keys = list(source.iterkeys())
    # mbox keys are positions already; Maildir keys are unique names that begin with the time.
    return sorted(keys) if isinstance(source, stdlib_mailbox.Maildir) else keys


def import_mailbox_file(mailbox: Mailbox, path: Path, progress: Progress | None = None) -> ImportResult:
    source = _open(path)
    uidvalidity = import_uidvalidity(path)
    folder, _ = Folder.objects.update_or_create(
        mailbox=mailbox, name=f"Imported/{path.resolve().name}", defaults={"role": FolderRole.OTHER, "uidvalidity": uidvalidity}
    )
    keys = _keys(source)
    stored = set(MessageCopy.objects.filter(folder=folder, uidvalidity=uidvalidity).values_list("uid", flat=True))
    imported = 0
    for done, (uid, key) in enumerate(_numbered(keys), start=1):
        if uid not in stored:
            message_ingest(
                mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid, raw=source.get_bytes(key), flags=_flags(source, key)
            )
            imported += 1
        if progress is not None:
            progress(done, len(keys))
    Folder.objects.filter(pk=folder.pk).update(messages_total=len(keys), messages_done=len(keys), highest_uid=len(keys))
    source.close()
    return ImportResult(folder=folder, total=len(keys), imported=imported, skipped=len(keys) - imported)


def _numbered(keys: list[str]) -> Iterator[tuple[int, str]]:
    return ((index + 1, key) for index, key in enumerate(keys))


class ProgressBar:
    """``done/total``, rate and time left on one terminal line, redrawn at most five times a second."""

    WIDTH = 30

    def __init__(self, write: Callable[[str], object], clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.clock = clock
        self.started = clock()
        self.last_drawn = 0.0
        self.first_done: int | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.first_done is None:
            # Skipped messages (a resumed import) go by fast: the rate counts from the first one seen.
            self.first_done, self.started = done, now
        if done < total and now - self.last_drawn < 0.2:
            return
        self.last_drawn = now
        self.write(self.line(done, total, now - self.started, done - self.first_done))

    def line(self, done: int, total: int, elapsed: float, counted: int) -> str:
        filled = self.WIDTH * done // total if total else self.WIDTH
        rate = counted / elapsed if elapsed > 0 else 0.0
        left = f"{_duration((total - done) / rate)} left" if rate > 0 and done < total else ("done" if done >= total else "…")
        end = "\n" if done >= total else ""
        return f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}  {rate:.1f} msg/s  {left}   {end}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
