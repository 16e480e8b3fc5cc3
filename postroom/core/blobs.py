"""Encrypted, content-addressed blob storage (raw messages, attachment contents).

A blob is stored once per key scope (an organization): its name is a keyed HMAC of its SHA-256,
so the same attachment received by ten members is one file, and the file name reveals nothing
about the content to someone who lists the directory. The file holds AES-256-GCM ciphertext
bound to the scope and the name. Writes go to a temporary file and are renamed into place, so a
crash leaves no half-written blob; writing a blob that exists already only refreshes its
modification time. Blobs are written before the database transaction that references them (slow
I/O stays out of it); a crash in between leaves an unreferenced blob, which is harmless and is
removed by ``postroom manage blobs_sweep`` (``postroom.ops.blobs``). The sweep spares every blob
written or reused within its grace period, which is why reusing a blob refreshes its time: the
transaction about to reference it may not have committed yet.

``BlobBatch`` writes many blobs for one database transaction (a batch of fetched messages) and
makes them durable together: its temporary files are written without waiting for the disk, then
``durable()`` makes their contents durable, renames them into place and makes the renames
durable. A blob therefore appears under its name only after its bytes are on disk (a crash never
leaves a truncated blob that a later write would skip as "already there"), and every blob is
durable before the transaction that references it commits. A blob the batch finds stored
already is covered too: another batch may have renamed it into place a moment before, without
having made the rename durable yet.

On Linux (5.8 or later) a batch takes two ``syncfs`` calls, one for the files and one for the
renames, instead of an ``fsync`` per file and per directory: Linux's ``syncfs`` waits until every
write to the filesystem is on disk, as an ``fsync`` of each of its files would, and since 5.8 it
reports the writeback errors that happened since its descriptor was opened (older kernels drop
them, so they keep the per-file way). The descriptor is opened before the batch writes anything,
so an error writing any of its files fails the batch. The disk work is done by the kernel's
flusher, once per batch, instead of a thread per file. Elsewhere, and for a file found on another
filesystem than the blob root (a mount below it), each file and then each directory is fsynced.
``syncfs`` also writes whatever else is waiting on that filesystem: a batch can take longer when
other programs have much unwritten data there.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from postroom.core.crypto import Field
from postroom.core.keys import Keyring, keyring


def blob_root() -> Path:
    return Path(settings.DATA_DIR) / "blobs"


def blob_name(scope: str, content: bytes) -> str:
    return keyring().blind_index(scope, "blob", hashlib.sha256(content).hexdigest())


def blob_scope_directory(scope: str) -> Path:
    """Where the blobs of ``scope`` live (a keyed name, so a listing does not reveal the scope)."""
    return _scope_directory(keyring(), str(settings.DATA_DIR), scope)


@functools.lru_cache(maxsize=1024)
def _scope_directory(ring: Keyring, data_dir: str, scope: str) -> Path:
    # Remembered: a first import asks for it for every blob. (Per keyring and data directory,
    # which tests replace.)
    return Path(data_dir) / "blobs" / ring.blind_index(scope, "blob-dir", scope)[:16]


def _path(scope: str, name: str) -> Path:
    return blob_scope_directory(scope) / name[:2] / name


def _reuse(path: str | Path) -> bool:
    """Whether the blob is stored already; if so its time is refreshed, so that the sweep, which
    spares recent blobs, cannot remove it before the transaction referencing it commits."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _field(name: str) -> Field:
    return Field(table="blob", column="content", row=name)


def blob_put(scope: str, content: bytes) -> str:
    """Store ``content`` (idempotently) and return its name."""
    name = blob_name(scope, content)
    path = _path(scope, name)
    if _reuse(path):
        return name
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
    sealed = keyring().encrypt(scope, _field(name), content)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(sealed)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(str(path.parent))  # the rename too: the caller's transaction will reference it
    return name


# Threads that wait for the disk (fsync releases the GIL): enough for the journal to group many.
_SYNC_THREADS = 16
# Threads that create and write the temporary files of a ``BlobBatch`` (the caller goes on
# meanwhile), and the blobs each write task takes: one task per blob cost the caller more in
# handing it over than the write itself.
_WRITE_THREADS = 4
_BLOBS_PER_WRITE = 16
_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(name: str, threads: int) -> ThreadPoolExecutor:
    with _executors_lock:
        executor = _executors.get(name)
        if executor is None:
            executor = _executors[name] = ThreadPoolExecutor(threads, thread_name_prefix=f"blobs-{name}")
        return executor


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _syncfs_function() -> Callable[[int], None] | None:
    """``syncfs(2)`` of the C library, where it reports writeback errors (Linux 5.8 and later)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (ValueError, AttributeError, OSError):
        return None
    if (major, minor) < (5, 8):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int

    def sync(descriptor: int) -> None:
        if syncfs(descriptor) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    return sync


# Every write to the filesystem of the descriptor on disk, its writeback errors since the
# descriptor was opened raised; None where that is not available (one fsync per file then).
_syncfs = _syncfs_function()


def _write_temporary(temporary: str, sealed: bytes) -> int:
    """Write ``sealed`` to a new temporary file (its directory made if missing); its open
    descriptor (not fsynced yet)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        descriptor = os.open(temporary, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(temporary), mode=0o700, exist_ok=True)
        descriptor = os.open(temporary, flags, 0o600)
    try:
        view = memoryview(sealed)
        while view:
            view = view[os.write(descriptor, view) :]
    except BaseException:
        os.close(descriptor)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return descriptor


@dataclass
class _Pending:
    """A blob of a ``BlobBatch``: written to ``temporary``, or found stored already (``written``
    False). ``descriptor`` stays open when the file is to be fsynced on its own (no ``syncfs``,
    or a file on another filesystem than the batch's anchor)."""

    path: str
    temporary: str
    sealed: bytes
    written: bool = False
    reused: bool = False
    descriptor: int | None = None


def _write_pending(blobs: list[_Pending], device: int | None) -> None:
    """One write task of a ``BlobBatch``: each blob reused if stored already, else written to its
    temporary file, closed at once if it is on filesystem ``device`` (which ``syncfs`` will make
    durable); on failure every file this task wrote is closed and removed."""
    try:
        for blob in blobs:
            if _reuse(blob.path):
                blob.reused = True
            else:
                blob.descriptor = _write_temporary(blob.temporary, blob.sealed)
                blob.written = True
                if device is not None and os.fstat(blob.descriptor).st_dev == device:
                    os.close(blob.descriptor)
                    blob.descriptor = None
            blob.sealed = b""
    except BaseException:
        _remove_temporaries(blobs)
        raise


def _remove_temporaries(blobs: list[_Pending]) -> None:
    for blob in blobs:
        if blob.descriptor is not None:
            os.close(blob.descriptor)
            blob.descriptor = None
        if blob.written:
            blob.written = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(blob.temporary)


def _open_anchor() -> int:
    """A descriptor of the blob root (made if missing), for ``syncfs``."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    try:
        return os.open(blob_root(), flags)
    except FileNotFoundError:
        blob_root().mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(blob_root(), flags)


class BlobBatch:
    """Blobs written now and made durable together by ``durable()``; see the module docstring.

    ``put`` names and seals a blob in the caller's thread (the data key may need the database)
    and leaves the rest to threads, a few blobs per task (the caller goes on while the disk
    works): finding it stored already (its time refreshed), else creating and writing its
    temporary file. ``durable()`` waits for those writes first."""

    def __init__(self) -> None:
        self._paths: set[str] = set()  # every blob put, by its final path
        self._queued: list[_Pending] = []  # not handed to a write task yet
        self._writes: list[tuple[list[_Pending], Future[None]]] = []
        self._tag = secrets.token_hex(4)  # temporary names: unique to this batch, numbered in it
        # Opened before the batch writes anything, so that its syncfs reports every writeback
        # error since; a descriptor of its own, because the first syncfs to see an error takes it.
        self._anchor: int | None = None
        self._anchor_device: int | None = None

    def put(self, scope: str, content: bytes) -> str:
        name = blob_name(scope, content)
        directory = f"{blob_scope_directory(scope)}/{name[:2]}"
        path = f"{directory}/{name}"
        if path in self._paths:
            return name
        if _syncfs is not None and self._anchor is None:
            self._anchor = _open_anchor()
            self._anchor_device = os.fstat(self._anchor).st_dev
        self._paths.add(path)
        temporary = f"{directory}/.{name}.{self._tag}{len(self._paths)}.tmp"
        self._queued.append(_Pending(path, temporary, keyring().encrypt(scope, _field(name), content)))
        if len(self._queued) >= _BLOBS_PER_WRITE:
            self._write_queued()
        return name

    def _write_queued(self) -> None:
        if self._queued:
            blobs, self._queued = self._queued, []
            submitted = _executor("writes", _WRITE_THREADS).submit(_write_pending, blobs, self._anchor_device)
            self._writes.append((blobs, submitted))

    def _written(self) -> list[_Pending]:
        """Every blob put, once written (waiting for the writes still running)."""
        self._write_queued()
        for _, written in self._writes:
            written.result()
        return [blob for blobs, _ in self._writes for blob in blobs]

    def durable(self) -> None:
        """Every blob put so far on disk under its name."""
        try:
            blobs = self._written()
            written = [blob for blob in blobs if blob.written]
            alone = [blob.descriptor for blob in written if blob.descriptor is not None]  # fsynced one by one
            together = len(alone) < len(written)  # the others: one syncfs for all
            # A blob found stored may have been renamed into place a moment ago by another batch
            # that has not made the rename durable yet: its rename is made durable here too.
            found = {os.path.dirname(blob.path) for blob in blobs if blob.reused}
            renames_synced = together or (bool(found) and self._anchor is not None)
            syncing = _executor("fsync", _SYNC_THREADS)
            if together:
                self._sync_filesystem()
            list(syncing.map(os.fsync, alone))
            for blob in written:
                os.replace(blob.temporary, blob.path)
                blob.written = False
            if renames_synced:
                self._sync_filesystem()
            directories = {os.path.dirname(blob.path) for blob in written if blob.descriptor is not None}
            if not renames_synced:
                directories |= found
            list(syncing.map(_fsync_directory, directories))
        finally:
            self.discard()

    def _sync_filesystem(self) -> None:
        if self._anchor is None or _syncfs is None:
            raise RuntimeError("a blob was written to be synced with its filesystem, but there is no syncfs")
        _syncfs(self._anchor)

    def durable_soon(self) -> Future[None]:
        """``durable()`` in the background; the batch must not be touched until the future is done."""
        return _executor("batches", 4).submit(self.durable)

    def discard(self) -> None:
        """Forget the blobs not yet made durable, removing their temporary files."""
        for blobs, written in self._writes:
            with contextlib.suppress(Exception):  # a failed write removed its own files; its error was raised by durable
                written.result()
                _remove_temporaries(blobs)
        self._writes.clear()
        self._queued.clear()
        self._paths.clear()
        if self._anchor is not None:
            os.close(self._anchor)
            self._anchor = self._anchor_device = None


def blob_get(scope: str, name: str) -> bytes:
    return keyring().decrypt(scope, _field(name), _path(scope, name).read_bytes())


def blob_exists(scope: str, name: str) -> bool:
    return _path(scope, name).exists()
