"""BlobBatch: a batch's blobs are on disk before they appear under their names, all of them are
durable when ``durable()`` returns (so before the transaction that references them commits), and
a failure to make them durable fails the batch, leaves nothing under a name and commits nothing."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postroom.conftest import Cast
from postroom.conversations.ingest import IngestItem, messages_ingest_batch
from postroom.conversations.models import Message, MessageCopy
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.core import blobs
from postroom.core.keys import org_scope
from postroom.mailboxes.tests.factories import make_mailbox

pytestmark = pytest.mark.django_db

needs_syncfs = pytest.mark.skipif(blobs._syncfs is None, reason="syncfs that reports writeback errors: Linux 5.8 or later")


@pytest.fixture
def blob_directory(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    return tmp_path / "blobs"


def contents(count: int) -> list[bytes]:
    # Enough blobs for several write tasks and many directories, one stored twice.
    return [f"blob {number} ".encode() * (number + 1) for number in range(count)] + [b"blob 0 "]


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def put_all(batch: blobs.BlobBatch, scope: str, values: list[bytes]) -> list[Path]:
    names = [batch.put(scope, value) for value in values]
    return sorted({blobs._path(scope, name) for name in names})


@needs_syncfs
def test_a_batch_is_synced_with_its_filesystem_before_and_after_its_renames(
    cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_syncfs = blobs._syncfs
    assert real_syncfs is not None
    seen: list[tuple[int, int]] = []  # at each syncfs: blobs under their names, temporary files
    paths: list[Path] = []

    def syncfs(descriptor: int) -> None:
        seen.append((sum(path.exists() for path in paths), sum(path.name.endswith(".tmp") for path in files_under(blob_directory))))
        real_syncfs(descriptor)

    monkeypatch.setattr(blobs, "_syncfs", syncfs)
    fsynced: list[int] = []
    monkeypatch.setattr(blobs.os, "fsync", fsynced.append)
    scope = org_scope(cast.org_a.pk)
    batch = blobs.BlobBatch()
    paths.extend(put_all(batch, scope, contents(40)))
    batch.durable()
    assert seen == [(0, 40), (40, 0)]  # every file written before the first, renamed before the second
    assert fsynced == []  # no file nor directory one by one
    assert files_under(blob_directory) == paths
    assert sorted(blobs.blob_get(scope, path.name) for path in paths) == sorted(contents(40)[:40])


def fsyncs_recorded(monkeypatch: pytest.MonkeyPatch, paths: list[Path]) -> list[tuple[str, int]]:
    """Each fsync's kind (file or directory) and how many blobs were under their names then."""
    done: list[tuple[str, int]] = []
    real_fsync: Callable[[int], None] = os.fsync

    def fsync(descriptor: int) -> None:
        kind = "directory" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file"
        done.append((kind, sum(path.exists() for path in paths)))
        real_fsync(descriptor)

    monkeypatch.setattr(blobs.os, "fsync", fsync)
    return done


def test_without_syncfs_each_file_then_each_directory_is_fsynced(cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "_syncfs", None)
    paths: list[Path] = []
    done = fsyncs_recorded(monkeypatch, paths)
    batch = blobs.BlobBatch()
    paths.extend(put_all(batch, org_scope(cast.org_a.pk), contents(40)))
    batch.durable()
    directories = {path.parent for path in paths}
    assert sorted(done) == sorted([("file", 0)] * 40 + [("directory", 40)] * len(directories))
    assert files_under(blob_directory) == paths


@needs_syncfs
def test_a_file_on_another_filesystem_than_the_blob_root_is_fsynced_on_its_own(
    cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batch's anchor on another filesystem (/proc) than its files: as if each directory
    # below the blob root were a mount of its own, which a syncfs of the root would not cover.
    monkeypatch.setattr(blobs, "_open_anchor", lambda: os.open("/proc", os.O_RDONLY | os.O_DIRECTORY))
    synced: list[int] = []
    monkeypatch.setattr(blobs, "_syncfs", synced.append)
    paths: list[Path] = []
    done = fsyncs_recorded(monkeypatch, paths)
    batch = blobs.BlobBatch()
    paths.extend(put_all(batch, org_scope(cast.org_a.pk), contents(20)))
    batch.durable()
    assert synced == []
    assert sorted(done) == sorted([("file", 0)] * 20 + [("directory", 20)] * len({path.parent for path in paths}))


def failing_syncfs(calls_before_failure: int) -> Callable[[int], None]:
    calls = 0

    def syncfs(descriptor: int) -> None:
        nonlocal calls
        calls += 1
        if calls > calls_before_failure:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    return syncfs


@needs_syncfs
def test_a_write_error_reported_by_syncfs_fails_the_batch_and_leaves_no_blob_under_its_name(
    cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobs, "_syncfs", failing_syncfs(0))
    batch = blobs.BlobBatch()
    put_all(batch, org_scope(cast.org_a.pk), contents(20))
    with pytest.raises(OSError, match="Input/output error"):
        batch.durable()
    assert files_under(blob_directory) == []  # the temporary files removed, nothing renamed
    # The descriptor taken for syncfs is closed: a new batch works as before.
    monkeypatch.undo()
    batch = blobs.BlobBatch()
    assert len(put_all(batch, org_scope(cast.org_a.pk), contents(3))) == 3
    batch.durable()
    assert len(files_under(blob_directory)) == 3


@pytest.mark.parametrize("calls_before_failure", [0, 1], ids=["files", "renames"])
def test_an_ingest_whose_blobs_cannot_be_made_durable_stores_nothing(
    cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch, calls_before_failure: int
) -> None:
    if blobs._syncfs is None:
        pytest.skip("syncfs that reports writeback errors: Linux 5.8 or later")
    monkeypatch.setattr(blobs, "_syncfs", failing_syncfs(calls_before_failure))
    mailbox = make_mailbox(cast.alice_membership, address="alice@acme.test")
    items = [IngestItem(uid=uid, raw=build_raw(subject=f"Order {uid}", message_id=f"<{uid}@shop.example>")) for uid in range(1, 6)]
    with pytest.raises(OSError, match="Input/output error"):
        messages_ingest_batch(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, items=items)
    assert (Message.objects.count(), MessageCopy.objects.count()) == (0, 0)
    # Renamed blobs (their files were durable) may stay as orphans for the sweep; no temporary file.
    assert not [path for path in files_under(blob_directory) if path.name.endswith(".tmp")]
    monkeypatch.undo()
    copies = messages_ingest_batch(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, items=items)
    assert len(copies) == 5
    assert blobs.blob_get(mailbox.key_scope(), Message.objects.get(pk=copies[3].message_id).raw_blob) == items[2].raw


@needs_syncfs
def test_syncfs_raises_the_error_the_kernel_answers() -> None:
    assert blobs._syncfs is not None
    with pytest.raises(OSError, match=os.strerror(errno.EBADF)) as raised:
        blobs._syncfs(-1)
    assert raised.value.errno == errno.EBADF


@pytest.mark.parametrize(
    ("platform", "release", "available"),
    [("linux", "5.7.19", False), ("linux", "5.8.0", True), ("linux", "6.18.44-custom", True), ("linux", "4.19", False),
     ("darwin", "23.1.0", False)],
)
def test_syncfs_is_used_only_where_it_reports_writeback_errors(
    monkeypatch: pytest.MonkeyPatch, platform: str, release: str, available: bool
) -> None:
    if platform == "linux" and blobs._syncfs is None:
        pytest.skip("no syncfs in this C library")
    monkeypatch.setattr(blobs.sys, "platform", platform)
    monkeypatch.setattr(blobs.os, "uname", lambda: os.uname_result(("Linux", "host", release, "#1", "x86_64")))
    assert (blobs._syncfs_function() is not None) == available


def test_a_single_blob_is_fsynced_then_renamed_then_its_directory_fsynced(
    cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = org_scope(cast.org_a.pk)
    content = b"an uploaded file"
    path = blobs._path(scope, blobs.blob_name(scope, content))
    done = fsyncs_recorded(monkeypatch, [path])
    assert blobs.blob_put(scope, content) == path.name
    assert done == [("file", 0), ("directory", 1)]


def test_a_batch_that_only_finds_its_blobs_stored_still_makes_their_renames_durable(
    cast: Cast, blob_directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another batch may have renamed them into place a moment ago, before making that durable.
    scope = org_scope(cast.org_a.pk)
    first = blobs.BlobBatch()
    paths = put_all(first, scope, contents(5))
    first.durable()
    synced: list[int] = []
    if blobs._syncfs is not None:
        monkeypatch.setattr(blobs, "_syncfs", synced.append)
    done = fsyncs_recorded(monkeypatch, paths)
    again = blobs.BlobBatch()
    put_all(again, scope, contents(5))
    again.durable()
    if blobs._syncfs is not None:
        assert (len(synced), done) == (1, [])
    else:
        assert done == [("directory", 5)] * len({path.parent for path in paths})
    monkeypatch.setattr(blobs, "_syncfs", None)  # the per-file way: each of their directories
    done.clear()
    again = blobs.BlobBatch()
    put_all(again, scope, contents(5))
    again.durable()
    assert done == [("directory", 5)] * len({path.parent for path in paths})
