"""``postroom manage blobs_sweep``: unreferenced blobs go, referenced ones and those a transaction
may still be about to reference stay, and nothing but counts is reported."""

from __future__ import annotations

import io
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from postroom.conftest import Cast
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Attachment, Message
from postroom.core.blobs import BlobBatch, blob_exists, blob_put, blob_root, blob_scope_directory
from postroom.core.keys import org_scope, reload_keyring
from postroom.mailboxes.models import Folder, FolderRole, Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.mime.build import OutgoingAttachment
from postroom.ops import blobs as sweep_module
from postroom.ops.blobs import SweepReport
from postroom.outbox.actions import outgoing_create
from postroom.outbox.models import OutgoingKind
from postroom.responses.actions import NewAttachment, ResponseContent, response_attachments_add, response_create, response_delete
from postroom.responses.models import Scope

pytestmark = pytest.mark.django_db

GRACE = timedelta(hours=24)
LONG_AGO = time.time() - 3 * 24 * 3600

WITH_ATTACHMENT = (
    b"From: Dana <dana@customer.example>\r\nTo: someone@postroom.test\r\nSubject: Report\r\n"
    b"Message-ID: <report@customer.example>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n"
    b'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="data.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b--\r\n"
)


@pytest.fixture(autouse=True)
def blob_directory(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path
    # The sweep finds scopes by their data keys in the database; the process-wide keyring may
    # still cache keys of an earlier test's rolled-back rows (ids repeat between tests).
    reload_keyring()
    return tmp_path


def sweep(*, dry_run: bool = False, **options: Any) -> SweepReport:
    return sweep_module._sweep(grace=GRACE, dry_run=dry_run, progress=options.get("progress"), progress_every=options.get("every", 1000))


def blob_path(scope: str, name: str) -> Path:
    return blob_scope_directory(scope) / name[:2] / name


def age(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (LONG_AGO, LONG_AGO))


def every_blob_file() -> list[Path]:
    return [path for path in blob_root().rglob("*") if path.is_file()]


def stored_message(mailbox: Mailbox) -> Message:
    folder, _ = Folder.objects.get_or_create(mailbox=mailbox, name="INBOX", defaults={"role": FolderRole.INBOX})
    return message_ingest(mailbox=mailbox, folder=folder, uidvalidity=1, uid=1, raw=WITH_ATTACHMENT).message


def test_unreferenced_blobs_older_than_the_grace_period_are_removed_and_referenced_ones_kept(cast: Cast) -> None:
    mailbox = make_mailbox(cast.alice_membership)
    message = stored_message(mailbox)
    attachment = Attachment.objects.get(message=message)
    outgoing = outgoing_create(
        actor=cast.alice_membership, mailbox=mailbox, kind=OutgoingKind.NEW, to=[("Dana", "dana@customer.example")],
        subject="Figures", text="Attached.\n", attachments=[OutgoingAttachment("figures.csv", "text/csv", b"a,b\n1,2\n")],
    )  # fmt: skip
    scope = org_scope(cast.org_a.pk)
    envelope_only = (outgoing.envelope or {})["attachments"][0]["blob"]
    # A crash between writing the blob and committing its row, long ago and just now.
    orphan, young_orphan = blob_put(scope, b"never referenced"), blob_put(scope, b"written a moment ago")
    # What another organization's deleted messages left behind.
    other_orphan = blob_put(org_scope(cast.org_b.pk), b"the other organization's")
    kept = [message.raw_blob, attachment.blob, outgoing.raw_blob, envelope_only]
    age(*(blob_path(scope, name) for name in [*kept, orphan]), blob_path(org_scope(cast.org_b.pk), other_orphan))
    size = blob_path(scope, orphan).stat().st_size + blob_path(org_scope(cast.org_b.pk), other_orphan).stat().st_size

    dry = sweep(dry_run=True)
    assert (dry.scanned, dry.referenced, dry.recent, dry.removed, dry.removed_bytes) == (7, 4, 1, 2, size)
    assert blob_exists(scope, orphan)  # a dry run removes nothing

    report = sweep()
    assert (report.scanned, report.referenced, report.recent, report.removed, report.removed_bytes) == (7, 4, 1, 2, size)
    assert not blob_exists(scope, orphan)
    assert not blob_exists(org_scope(cast.org_b.pk), other_orphan)
    assert all(blob_exists(scope, name) for name in [*kept, young_orphan])
    assert sweep().removed == 0  # nothing left to do


def test_the_files_of_responses_are_kept_while_their_response_exists(cast: Cast) -> None:
    response = response_create(actor=cast.bob_membership, scope=Scope.PERSONAL, content=ResponseContent(name="Policy"))
    [attachment] = response_attachments_add(
        actor=cast.bob_membership, response=response, files=[NewAttachment("policy.pdf", "application/pdf", b"%PDF policy")]
    )
    scope = org_scope(cast.org_a.pk)
    age(blob_path(scope, attachment.blob))
    assert sweep().removed == 0
    assert blob_exists(scope, attachment.blob)
    response_delete(actor=cast.bob_membership, response=response)
    assert sweep().removed == 1
    assert not blob_exists(scope, attachment.blob)


def test_a_blob_reused_by_a_transaction_still_running_is_spared(cast: Cast) -> None:
    scope = org_scope(cast.org_a.pk)
    name = blob_put(scope, b"an attachment received before, unreferenced since")
    age(blob_path(scope, name))
    # A new message with the same attachment: ingest writes its blobs (finding this one there)
    # before its transaction commits the rows that reference them.
    batch = BlobBatch()
    assert batch.put(scope, b"an attachment received before, unreferenced since") == name
    batch.durable()
    report = sweep()
    assert (report.recent, report.removed) == (1, 0)
    assert blob_exists(scope, name)


def test_a_blob_reused_between_the_listing_and_its_removal_is_put_back(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    scope = org_scope(cast.org_a.pk)
    content = b"reused at the worst moment"
    name = blob_put(scope, content)
    age(blob_path(scope, name))
    check = sweep_module._referenced_names

    def check_while_a_writer_reuses_it(organization_id: str, *, among: set[str] | None = None) -> set[str]:
        if among is not None:  # the second check, after the listing: a writer reuses the blob now
            blob_put(scope, content)
        return check(organization_id, among=among)

    monkeypatch.setattr(sweep_module, "_referenced_names", check_while_a_writer_reuses_it)
    report = sweep()
    assert (report.removed, report.put_back) == (0, 1)
    assert blob_exists(scope, name)
    assert [path.name for path in every_blob_file()] == [name]


def test_a_row_committed_after_the_first_look_is_seen_by_the_second(cast: Cast, monkeypatch: pytest.MonkeyPatch) -> None:
    mailbox = make_mailbox(cast.alice_membership)
    scope = org_scope(cast.org_a.pk)
    raw_blob = blob_put(scope, WITH_ATTACHMENT)  # written long ago by an import that crashed
    age(blob_path(scope, raw_blob))
    check = sweep_module._referenced_names
    referenced: list[str] = []

    def first_look_then_a_commit(organization_id: str, *, among: set[str] | None = None) -> set[str]:
        names = check(organization_id, among=among)
        if among is None:  # the row referencing the blob commits right after the first look
            referenced.append(stored_message(mailbox).raw_blob)
            age(*every_blob_file())
        return names

    monkeypatch.setattr(sweep_module, "_referenced_names", first_look_then_a_commit)
    report = sweep()
    assert referenced == [raw_blob]
    assert (report.referenced, report.removed) == (2, 0)  # the raw message and its attachment
    assert blob_exists(scope, raw_blob)


def test_leftovers_of_crashes_are_cleaned_up(cast: Cast) -> None:
    scope = org_scope(cast.org_a.pk)
    kept = blob_put(scope, b"referenced by nothing yet, but recent")
    bucket = blob_path(scope, kept).parent
    old_temporary, new_temporary = bucket / f".{kept}.0a0b0c0d.tmp", bucket / f".{kept}.01020304.tmp"
    old_temporary.write_bytes(b"half written")
    new_temporary.write_bytes(b"being written")  # a write in progress
    age(old_temporary)
    # A sweep that crashed after renaming a blob aside: it is put back, then judged again.
    aside = bucket / f".{kept}.deadbeef.sweep"
    os.rename(blob_path(scope, kept), aside)
    report = sweep()
    assert (report.temporary_removed, report.put_back, report.removed) == (1, 1, 0)
    assert sorted(path.name for path in bucket.iterdir()) == sorted([kept, new_temporary.name])


def test_directories_of_other_scopes_are_left_alone_and_keyless_ones_are_swept(cast: Cast) -> None:
    member_scope = f"member:{secrets.token_hex(4)}"  # a scope kind the sweep knows no references of
    other = blob_put(member_scope, b"not the sweep's to judge")
    age(blob_path(member_scope, other))
    keyless = blob_root() / "0123456789abcdef" / "ab"  # its keys are gone: nobody can decrypt it
    keyless.mkdir(parents=True)
    (keyless / ("ab" + "0" * 62)).write_bytes(b"ciphertext")
    age(keyless / ("ab" + "0" * 62))
    report = sweep()
    assert (report.skipped_directories, report.removed) == (1, 1)
    assert blob_exists(member_scope, other)
    assert not any(keyless.iterdir())


def test_the_command_reports_counts_only_and_refuses_a_short_grace(cast: Cast) -> None:
    mailbox = make_mailbox(cast.alice_membership)
    message = stored_message(mailbox)
    scope = org_scope(cast.org_a.pk)
    orphan = blob_put(scope, b"CANARY-7f3a unreferenced content")
    age(*every_blob_file())
    names = [message.raw_blob, orphan, *Attachment.objects.filter(message=message).values_list("blob", flat=True)]
    out, err = io.StringIO(), io.StringIO()
    call_command("blobs_sweep", "--dry-run", stdout=out, stderr=err)
    assert "would remove 1 unreferenced" in out.getvalue()
    assert blob_exists(scope, orphan)
    call_command("blobs_sweep", stdout=out, stderr=err)
    assert "removed 1 unreferenced" in out.getvalue()
    assert not blob_exists(scope, orphan)
    printed = out.getvalue() + err.getvalue()
    assert not any(name in printed for name in names)
    assert "CANARY" not in printed
    assert re.fullmatch(r"[\w\s(),.;:-]+", printed)  # prose and numbers
    with pytest.raises(CommandError, match="at least 1"):
        call_command("blobs_sweep", "--grace-hours", "0.5")


def test_progress_is_reported_while_scanning(cast: Cast) -> None:
    scope = org_scope(cast.org_a.pk)
    for number in range(5):
        blob_put(scope, f"blob {number}".encode())
    seen: list[int] = []
    sweep(progress=lambda report: seen.append(report.scanned), every=2)
    assert seen == [2, 4, 5]


def test_every_module_that_writes_blobs_is_known_to_the_sweep() -> None:
    # A blob whose references the sweep does not know would be removed as unreferenced: a module
    # that starts writing blobs must have its references added to postroom.ops.blobs first.
    known = {
        "postroom/conversations/ingest.py", "postroom/conversations/bodies.py", "postroom/outbox/actions.py",
        "postroom/responses/actions.py", "postroom/comments/actions.py",
    }  # fmt: skip
    root = Path(__file__).resolve().parents[3]
    writers = {
        str(path.relative_to(root))
        for path in (root / "postroom").rglob("*.py")
        if "tests" not in path.parts and path.name != "blobs.py" and re.search(r"\b(blob_put|BlobBatch)\b", path.read_text())
    }
    assert writers <= known, f"add the references of {sorted(writers - known)} to postroom.ops.blobs"
