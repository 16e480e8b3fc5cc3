"""Removing blobs that nothing references any more: ``postroom manage blobs_sweep``.

Where they come from: blobs are written before the transaction that references them
(``postroom.core.blobs``), so a crash or a rolled-back transaction between the two leaves a blob
that no row names; deleting messages, outgoing mail or a whole organization leaves theirs. They
hold encrypted content nobody needs, and they take space. But a blob must never be removed while
a row references it, or while a transaction that is about to reference it has not committed.

What counts as a reference, per organization: ``Message.raw_blob``, ``Attachment.blob``,
``OutgoingMessage.raw_blob``, the attachment blobs listed in an ``OutgoingMessage``'s sealed
envelope, ``ResponseAttachment.blob`` (the files of canned responses) and
``CommentAttachment.blob`` (files attached to comments). A module that starts
writing blobs for another model must be added here
(``test_every_module_that_writes_blobs_is_known_to_the_sweep`` fails until it is).

How a blob of a transaction still in flight is spared:

- The grace period: only blobs whose modification time is older than it are candidates. A blob
  is written, or reused (``core.blobs`` then refreshes its time), just before its transaction
  runs. Only a transaction lasting longer than the grace period (default 24 hours, at least one)
  could lose its blob.
- The order: a directory's files are listed and aged first, and the candidates are checked
  against the database after that, so a row committed before the check is seen.
- The removal: a candidate is renamed aside and its time read again. A writer that reused it
  between the listing and the rename has refreshed its time, and it is put back; a writer after
  the rename finds no blob and writes it again. Only then is it deleted.

Blob directories are per key scope. An organization's directory is swept as above. A directory
of another scope that has data keys is left alone: what references its blobs is not known here.
A directory that matches no scope with data keys holds blobs nobody can decrypt any more (their
keys are gone with their organization): it is swept like an organization without references.
Also removed: temporary files of writes interrupted by a crash (``.<name>.<random>.tmp``) older
than the grace period. A blob that a crashed sweep left renamed aside is put back first, then
judged like any other.

The report holds counts only: never blob names (keyed hashes, but still one per content) and
never content.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from postroom.comments.models import CommentAttachment
from postroom.conversations.models import Attachment, Message
from postroom.core.blobs import blob_root, blob_scope_directory
from postroom.core.keys import org_scope
from postroom.core.models import DataKey
from postroom.outbox.models import OutgoingMessage
from postroom.responses.models import ResponseAttachment

logger = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=24)
MINIMUM_GRACE = timedelta(hours=1)
# Candidates checked against the database per query.
_CHECK_BATCH = 500
_ASIDE_SUFFIX = ".sweep"
_TEMPORARY_SUFFIX = ".tmp"
_ORG_PREFIX = org_scope("")


@dataclass
class SweepReport:
    scanned: int = 0  # blob files looked at
    referenced: int = 0  # kept: a row names them
    recent: int = 0  # kept: written or reused within the grace period
    removed: int = 0  # removed (in a dry run: would be)
    removed_bytes: int = 0
    temporary_removed: int = 0  # leftovers of interrupted writes (in a dry run: would be)
    put_back: int = 0  # put back after a crashed sweep, or reused during this one
    skipped_directories: int = 0  # scopes whose references this sweep does not know


def blobs_sweep(
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    progress: Callable[[SweepReport], None] | None = None,
    progress_every: int = 1000,
) -> SweepReport:
    """Remove (or, with ``dry_run``, count) the blobs no row references and that are older than
    ``grace``; see the module docstring for what is spared and why."""
    if grace < MINIMUM_GRACE:
        raise ValueError(f"the grace period must be at least {MINIMUM_GRACE}")
    return _sweep(grace=grace, dry_run=dry_run, progress=progress, progress_every=progress_every)


def _sweep(*, grace: timedelta, dry_run: bool, progress: Callable[[SweepReport], None] | None, progress_every: int) -> SweepReport:
    """``blobs_sweep`` without the lower bound on ``grace`` (tests age files instead of waiting)."""
    report = SweepReport()
    root = blob_root()
    if not root.is_dir():
        return report
    scopes = {blob_scope_directory(scope).name: scope for scope in DataKey.objects.values_list("scope", flat=True).distinct()}
    cutoff = time.time() - grace.total_seconds()
    tick = _Progress(report, progress, progress_every)
    for directory in sorted(root.iterdir()):
        if directory.is_symlink() or not directory.is_dir():
            continue
        scope = scopes.get(directory.name)
        if scope is not None and not scope.startswith(_ORG_PREFIX):
            report.skipped_directories += 1
            continue
        organization_id = scope.removeprefix(_ORG_PREFIX) if scope is not None else None
        _sweep_directory(directory, organization_id, cutoff=cutoff, dry_run=dry_run, report=report, tick=tick)
    if progress is not None:
        progress(report)
    logger.info(
        "blobs_sweep%s: %d scanned, %d referenced, %d recent, %d removed (%d bytes), %d temporary files removed, %d put back, "
        "%d directories skipped",
        " (dry run)" if dry_run else "", report.scanned, report.referenced, report.recent, report.removed, report.removed_bytes,
        report.temporary_removed, report.put_back, report.skipped_directories,
    )  # fmt: skip
    return report


class _Progress:
    def __init__(self, report: SweepReport, callback: Callable[[SweepReport], None] | None, every: int) -> None:
        self.report, self.callback, self.every = report, callback, max(1, every)

    def scanned(self) -> None:
        self.report.scanned += 1
        if self.callback is not None and self.report.scanned % self.every == 0:
            self.callback(self.report)


def _sweep_directory(
    directory: Path, organization_id: str | None, *, cutoff: float, dry_run: bool, report: SweepReport, tick: _Progress
) -> None:
    # Read before listing: a fast first filter. Candidates are checked again after the listing.
    referenced = _referenced_names(organization_id) if organization_id is not None else set()
    candidates: list[tuple[Path, int]] = []
    for bucket in sorted(directory.iterdir()):
        if bucket.is_symlink() or not bucket.is_dir():
            continue
        entries = list(os.scandir(bucket))
        if not dry_run:
            entries = _put_back_aside(bucket, entries, report)
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            status = entry.stat(follow_symlinks=False)
            modified, size = status.st_mtime, status.st_size
            if entry.name.startswith("."):
                if entry.name.endswith(_TEMPORARY_SUFFIX) and modified < cutoff:
                    if not dry_run:
                        Path(entry.path).unlink(missing_ok=True)
                    report.temporary_removed += 1
                continue
            tick.scanned()
            if entry.name in referenced:
                report.referenced += 1
            elif modified >= cutoff:
                report.recent += 1
            else:
                candidates.append((Path(entry.path), size))
    for batch in _batches(candidates, _CHECK_BATCH):
        names = {path.name for path, _ in batch}
        still_referenced = _referenced_names(organization_id, among=names) if organization_id is not None else set()
        for path, size in batch:
            if path.name in still_referenced:
                report.referenced += 1
            elif dry_run or _remove_unless_reused(path, cutoff):
                report.removed += 1
                report.removed_bytes += size
            else:
                report.put_back += 1


def _put_back_aside(bucket: Path, entries: list[os.DirEntry[str]], report: SweepReport) -> list[os.DirEntry[str]]:
    """Blobs a crashed sweep left renamed aside go back under their name, to be judged again."""
    aside = [entry for entry in entries if entry.name.startswith(".") and entry.name.endswith(_ASIDE_SUFFIX)]
    for entry in aside:
        original = bucket / entry.name[1:].split(".", 1)[0]
        if original.exists():
            Path(entry.path).unlink(missing_ok=True)  # written again meanwhile: the same content
        else:
            os.rename(entry.path, original)
            report.put_back += 1
    return list(os.scandir(bucket)) if aside else entries


def _remove_unless_reused(path: Path, cutoff: float) -> bool:
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_ASIDE_SUFFIX}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # removed by a sweep running beside this one
    if aside.stat().st_mtime >= cutoff:
        # Reused between the listing and the rename: a transaction is about to reference it.
        os.rename(aside, path)
        return False
    aside.unlink()
    return True


def _referenced_names(organization_id: str, *, among: set[str] | None = None) -> set[str]:
    """The blob names the organization's rows reference (only those in ``among`` when given)."""
    names: set[str] = set()
    columns = (
        (Message, "raw_blob"), (Attachment, "blob"), (OutgoingMessage, "raw_blob"), (ResponseAttachment, "blob"), (CommentAttachment, "blob"),
    )  # fmt: skip
    for model, column in columns:
        rows = model.objects.filter(organization_id=organization_id)
        if among is not None:
            rows = rows.filter(**{f"{column}__in": list(among)})
        names.update(rows.values_list(column, flat=True).iterator(chunk_size=5000))
    outgoing = OutgoingMessage.objects.filter(organization_id=organization_id).only("id", "organization_id", "envelope_sealed")
    for message in outgoing.iterator(chunk_size=500):
        for attachment in (message.envelope or {}).get("attachments", []):
            blob = attachment.get("blob") if isinstance(attachment, dict) else None
            if isinstance(blob, str) and (among is None or blob in among):
                names.add(blob)
    return names


def _batches(items: list[tuple[Path, int]], size: int) -> Iterator[list[tuple[Path, int]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
