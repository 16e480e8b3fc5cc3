"""What reaches the disk: no plaintext content anywhere (R45), attachments under server names (R32),
every message of CPython's email test corpus stored without an exception, concurrent ingest."""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import test as cpython_tests
from django.conf import settings
from django.db import connection
from django.utils import timezone

from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Attachment, Conversation, Message, MessageCopy
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.core.blobs import _path, blob_get, blob_root
from postroom.core.bulk import instances_insert
from postroom.mailboxes.models import Folder, Mailbox

CPYTHON_EMAIL_DATA = Path(cpython_tests.__file__).parent / "test_email" / "data"


def ingest(mailbox: Mailbox, uid: int, raw: bytes) -> MessageCopy:
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw)


def _database_bytes(tmp_path: Path) -> bytes:
    """Everything the database holds, as the bytes an attacker with the disk or a dump would get."""
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        name = str(connection.settings_dict["NAME"])
        raw_connection = connection.connection
        if connection.is_in_memory_db():
            # The test database lives in memory: copy its pages, free ones included, to a file.
            copy = sqlite3.connect(tmp_path / "copy.sqlite3")
            raw_connection.backup(copy)
            copy.close()
            return (tmp_path / "copy.sqlite3").read_bytes()
        raw_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return b"".join(Path(path).read_bytes() for path in (name, f"{name}-wal") if Path(path).exists())
    database = connection.settings_dict
    environment = {**os.environ, "PGPASSWORD": str(database.get("PASSWORD") or "")}
    command = ["pg_dump", "--no-owner", "-h", str(database["HOST"] or "127.0.0.1"), "-p", str(database["PORT"] or 5432)]
    command += ["-U", str(database["USER"]), str(database["NAME"])]
    return subprocess.run(command, env=environment, check=True, capture_output=True, timeout=120).stdout


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def _contents(path: Path) -> bytes:
    # The test workers share the data directory: another worker's temporary blob may have been
    # renamed into place since the listing (its final name is listed by the next walk).
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


@pytest.mark.django_db(transaction=True)
def test_r45_a_canary_in_every_field_appears_nowhere_on_disk(
    tmp_path: Path, alice_mailbox: Mailbox, bob_mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = f"CANARY{secrets.token_hex(8)}"
    raw = build_raw(
        subject=f"Subject {canary}",
        sender=f"{canary} <{canary.lower()}@customer.example>",
        to=f"alice@acme.test, {canary}-to@customer.example",
        cc=f"bob@acme.test, {canary} Cc <cc@{canary.lower()}.example>",
        text=f"Body {canary} in plain text\n",
        html=f"<p>Body {canary} in <b>HTML</b></p>",
        attachments=((f"{canary}.pdf", "application/pdf", f"%PDF {canary} content".encode()),),
    )
    ingest(alice_mailbox, 1, raw)
    ingest(bob_mailbox, 1, raw)
    quarantined = b"Subject: " + canary.encode() + b"\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n" * 20_000
    copy = ingest(alice_mailbox, 2, quarantined)
    assert copy.message.quarantine_reason

    # The content went in and comes out when decrypted, so a miss below is not a miss of the test.
    message = Message.objects.get(pk=Message.objects.filter(quarantine_reason="").get().pk)
    assert canary in (message.subject or "")
    assert canary in (message.text_body or "")
    assert canary in (Attachment.objects.get().filename or "")
    assert canary.encode() in blob_get(alice_mailbox.key_scope(), Attachment.objects.get().blob)

    needles = {canary.encode(), canary.lower().encode(), canary.encode("utf-16-le")}
    dump = _database_bytes(tmp_path)
    assert b"alice@acme.test" in dump  # the dump holds the rows (mailbox addresses are not content)
    assert not [needle for needle in needles if needle in dump]
    leaking_files = [str(path) for path in _files_under(Path(settings.DATA_DIR)) if any(needle in _contents(path) for needle in needles)]
    assert leaking_files == []
    assert not [path for path in _files_under(Path(settings.DATA_DIR)) if canary.lower() in str(path).lower()]
    assert canary not in caplog.text


# As an attacker writes them: RFC 2231 lets a parameter carry any byte, CR and LF included.
HOSTILE_NAMES = ["../../x.html", "a%22%0D%0ASet-Cookie:x", "%E2%80%AEgnp.exe", "n" * 300 + ".svg", "..%5C..%5Cevil.svg"]


def _hostile_message() -> bytes:
    parts = [
        b"From: mallory@evil.example\r\nTo: alice@acme.test\r\nSubject: files\r\nMessage-ID: <files@evil.example>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    ]
    for index, name in enumerate(HOSTILE_NAMES):
        content_type = b"text/html" if index % 2 == 0 else b"image/svg+xml"
        payload = b"<script>window.__xss=1</script>" if index % 2 == 0 else b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
        parts.append(
            b"--zz\r\nContent-Type: " + content_type + b"\r\nContent-Disposition: attachment; filename*=utf-8''" + name.encode()
            + b"\r\n\r\n" + payload + str(index).encode() + b"\r\n"
        )  # fmt: skip
    return b"".join(parts) + b"--zz--\r\n"


@pytest.mark.django_db
def test_r32_attachments_are_stored_under_server_names_inside_the_data_directory(alice_mailbox: Mailbox) -> None:
    ingest(alice_mailbox, 1, _hostile_message())
    stored = list(Attachment.objects.all())
    assert len(stored) == len(HOSTILE_NAMES)
    root = blob_root().resolve()
    for attachment in stored:
        path = _path(alice_mailbox.key_scope(), attachment.blob).resolve()
        assert path.is_relative_to(root)
        assert path.exists()
        assert len(path.name) == 64
        assert all(character in "0123456789abcdef" for character in path.name)
        filename = attachment.filename or ""
        assert filename
        assert not set(filename) & {"/", "\\", "\r", "\n", "\u202e", '"'}
        assert len(filename) <= 150
        assert b"<script>" not in path.read_bytes()
    assert not list(Path(settings.DATA_DIR).parent.glob("x.html"))
    assert not list(Path(settings.DATA_DIR).rglob("*.html"))
    assert not list(Path(settings.DATA_DIR).rglob("*.svg"))


@pytest.mark.django_db
def test_every_message_of_cpythons_email_test_corpus_is_stored(alice_mailbox: Mailbox) -> None:
    samples = sorted(path for path in CPYTHON_EMAIL_DATA.iterdir() if path.is_file())
    assert len(samples) > 40
    for uid, sample in enumerate(samples, start=1):
        raw = sample.read_bytes()
        copy = ingest(alice_mailbox, uid, raw)
        # Samples that differ only in trace headers are one message with several copies.
        assert blob_get(alice_mailbox.key_scope(), copy.message.raw_blob).split(b"\n")[-3:] == raw.split(b"\n")[-3:]
        assert copy.message.subject is not None
    assert MessageCopy.objects.count() == len(samples)
    assert Message.objects.count() > len(samples) // 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_ingesting_one_message_at_once_store_it_once(alice_mailbox: Mailbox) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); the race needs PostgreSQL")
    workers = 6
    folders = [Folder.objects.create(mailbox=alice_mailbox, name=f"Folder {number}", uidvalidity=1) for number in range(workers)]
    for round_number in range(5):
        raw = build_raw(message_id=f"<race{round_number}@example.test>", text=f"Round {round_number}\n")
        barrier = threading.Barrier(workers)
        errors: list[BaseException] = []

        def work(
            folder: Folder,
            uid: int = 1 + round_number,
            raw: bytes = raw,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                message_ingest(mailbox=alice_mailbox, folder=folder, uidvalidity=1, uid=uid, raw=raw)
            except BaseException as error:
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(folder,)) for folder in folders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    assert Message.objects.count() == 5
    assert MessageCopy.objects.count() == 5 * workers


@pytest.mark.django_db
def test_instances_insert_stores_rows_exactly_as_bulk_create(alice_mailbox: Mailbox) -> None:
    """The import's prepared inserts: the same columns as the ORM's, content sealed to the row."""
    organization_id = alice_mailbox.organization_id
    now = timezone.now()
    conversations = [Conversation(organization_id=organization_id, subject_index="s", last_message_at=now) for _ in range(2)]
    messages = []
    for conversation in conversations:
        conversation.subject = "Quarterly canary"
        message = Message(
            organization_id=organization_id, conversation_id=conversation.pk, message_id_index="m", content_index="c",
            sent_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), size=123, raw_blob="b", body_pending=True,
        )  # fmt: skip
        message.subject = "Quarterly canary"
        message.addresses = {"from": [["Dana", "dana@example.test"]]}
        messages.append(message)
    messages[1].message_id_index = "m2"  # (the Message-ID index is unique per organization)
    copies = [
        MessageCopy(
            mailbox=alice_mailbox, folder=inbox_of(alice_mailbox), uidvalidity=7, uid=uid, message_id=message.pk, seen=True, modseq=9
        )
        for uid, message in zip((1, 2), messages, strict=True)
    ]
    Conversation.objects.bulk_create(conversations[:1])
    instances_insert(conversations[1:])
    Message.objects.bulk_create(messages[:1])
    instances_insert(messages[1:])
    MessageCopy.objects.bulk_create(copies[:1])
    instances_insert(copies[1:])
    assert not messages[1]._state.adding

    def stored(model: type, pk: object, skip: set[str]) -> dict[str, object]:
        row = model.objects.values().get(pk=pk)
        return {name: value for name, value in row.items() if name not in skip}

    varying = {"id", "created_at", "message_id_index", "conversation_id"}
    for model, pair in ((Conversation, conversations), (Message, messages)):
        sealed = {name for name in stored(model, pair[0].pk, set()) if name.endswith("_sealed")}
        assert stored(model, pair[0].pk, varying | sealed) == stored(model, pair[1].pk, varying | sealed)
        fresh = model.objects.get(pk=pair[1].pk)
        assert fresh.subject == "Quarterly canary"  # sealed to its own row, readable
        assert fresh.created_at is not None
    assert Message.objects.get(pk=messages[1].pk).addresses == {"from": [["Dana", "dana@example.test"]]}
    first, second = (MessageCopy.objects.values().get(uid=uid) for uid in (1, 2))
    assert {name: value for name, value in first.items() if name not in {"id", "uid", "message_id", "created_at"}} == {
        name: value for name, value in second.items() if name not in {"id", "uid", "message_id", "created_at"}
    }
    assert second["created_at"] is not None
