"""messages_ingest_batch: the sync engine's path, which must store exactly what message_ingest would."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.conversations.bodies import message_bodies_fill
from postroom.conversations.ingest import IngestItem, message_ingest, messages_ingest_batch
from postroom.conversations.models import Attachment, Message, MessageCopy
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.core.blobs import blob_get
from postroom.mailboxes.models import Folder, Mailbox
from postroom.mime import isolation
from postroom.mime.isolation import IsolatedParser, ProcessLimits

pytestmark = pytest.mark.django_db

DEEP_MIME = (
    b"Subject: deep\r\nFrom: x@example.test\r\nMessage-ID: <deep@example.test>\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    + b"".join(f"--b{depth}\r\nContent-Type: multipart/mixed; boundary=b{depth + 1}\r\n\r\n".encode() for depth in range(150))
)


def batch(mailbox: Mailbox, items: list[IngestItem], folder: Folder | None = None) -> dict[int, MessageCopy]:
    """The batch, then the body pass its commit queues (run here: the test's transaction never commits)."""
    copies = messages_ingest_batch(mailbox=mailbox, folder=folder or inbox_of(mailbox), uidvalidity=7, items=items)
    message_bodies_fill(message_ids=[copy.message_id for copy in copies.values()])
    return {uid: MessageCopy.objects.get(pk=copy.pk) for uid, copy in copies.items()}


def test_duplicates_inside_one_batch_are_one_message(alice_mailbox: Mailbox) -> None:
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 8
    raw = build_raw(attachments=(("invoice.pdf", "application/pdf", pdf),))
    # The same message under another server's trace header; one without Message-ID, twice.
    relayed = b"Received: from relay.example by mx.example\r\n" + raw
    anonymous = build_raw(message_id=None, subject="No id", text="Same body\n")
    copies = batch(
        alice_mailbox,
        [
            IngestItem(uid=1, raw=raw),
            IngestItem(uid=2, raw=relayed, flags=[b"\\Seen"]),
            IngestItem(uid=3, raw=anonymous),
            IngestItem(uid=4, raw=anonymous),
            IngestItem(uid=4, raw=anonymous),  # a repeated UID is one copy
        ],
    )
    assert sorted(copies) == [1, 2, 3, 4]
    assert copies[1].message_id == copies[2].message_id
    assert copies[3].message_id == copies[4].message_id
    assert copies[1].message_id != copies[3].message_id
    assert Message.objects.count() == 2
    assert MessageCopy.objects.count() == 4
    assert Attachment.objects.count() == 1
    assert copies[2].seen
    assert not copies[1].seen
    stored = Message.objects.get(pk=copies[1].message_id)
    assert blob_get(alice_mailbox.key_scope(), stored.raw_blob) == raw
    assert blob_get(alice_mailbox.key_scope(), Attachment.objects.get().blob) == pdf
    assert stored.conversation.message_count == 1


def test_a_batch_with_uids_already_stored_updates_their_flags_and_adds_the_rest(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    first = message_ingest(mailbox=alice_mailbox, folder=inbox_of(alice_mailbox), uidvalidity=7, uid=1, raw=build_raw())
    known_elsewhere = build_raw(message_id="<elsewhere@customer.example>", text="Known\n")
    message_ingest(mailbox=bob_mailbox, folder=inbox_of(bob_mailbox), uidvalidity=7, uid=9, raw=known_elsewhere)
    copies = batch(
        alice_mailbox,
        [
            IngestItem(uid=1, raw=build_raw(), flags=["\\Flagged"], modseq=12),
            IngestItem(uid=2, raw=known_elsewhere),
            IngestItem(uid=3, raw=build_raw(message_id="<new@customer.example>", text="New\n")),
        ],
    )
    assert copies[1].pk == first.pk
    copies[1].refresh_from_db()
    assert copies[1].flagged
    assert copies[1].modseq == 12
    assert Message.objects.count() == 3  # the first, the one Bob has, the new one
    assert MessageCopy.objects.filter(mailbox=alice_mailbox).count() == 3
    assert copies[2].message.copies.count() == 2
    again = batch(alice_mailbox, [IngestItem(uid=3, raw=b"ignored: the copy exists")])
    assert again[3].pk == copies[3].pk
    assert Message.objects.count() == 3


def test_quarantined_and_garbage_messages_in_a_batch_are_stored_without_raising(alice_mailbox: Mailbox) -> None:
    garbage = b"\x00\xff" * 100
    copies = batch(
        alice_mailbox,
        [IngestItem(uid=1, raw=build_raw()), IngestItem(uid=2, raw=DEEP_MIME), IngestItem(uid=3, raw=garbage), IngestItem(uid=4, raw=b"")],
    )
    assert copies[1].message.quarantine_reason == ""
    assert copies[2].message.quarantine_reason == "mime_too_deep"
    assert copies[2].message.text_body is None
    for uid, raw in [(2, DEEP_MIME), (3, garbage), (4, b"")]:
        assert blob_get(alice_mailbox.key_scope(), copies[uid].message.raw_blob) == raw
    assert Message.objects.count() == 4


def _thread_sample(to: str) -> list[bytes]:
    start = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return start + timedelta(minutes=minutes)

    return [
        # Replies before their parent, in two branches the parent then merges.
        build_raw(to=to, message_id="<r1@x>", in_reply_to="<root@x>", subject="Re: Order", date=at(5), text="r1\n"),
        build_raw(
            to=to,
            message_id="<r2@x>",
            references="<root@x> <other@x>",
            in_reply_to="<other@x>",
            subject="Re: Order",
            date=at(6),
            text="r2\n",
        ),
        build_raw(to=to, message_id="<other@x>", subject="Something", date=at(3), text="other\n"),
        build_raw(to=to, message_id="<root@x>", subject="Order", date=at(1), text="root\n"),
        build_raw(to=to, message_id="<r3@x>", in_reply_to="<r1@x>", subject="Re: Order", date=at(7), text="r3\n"),
        # A forged Message-ID: stored on its own, in the conversation of the ID it claims.
        build_raw(to=to, message_id="<root@x>", subject="Order", date=at(8), text="forged\n"),
        # Subject fallback, with and without a shared participant.
        build_raw(to=to, message_id="<s1@x>", subject="Refund", date=at(10), text="s1\n"),
        build_raw(to=to, message_id="<s2@x>", subject="RE: refund", date=at(20), text="s2\n"),
        build_raw(to=to, message_id="<s3@x>", subject="Refund", sender="Eve <eve@elsewhere.example>", date=at(30), text="s3\n"),
        build_raw(to=to, message_id=None, subject="Refund", date=at(40), text="s4\n"),
        build_raw(to=to, message_id=None, subject="Refund", date=at(40), text="s4\n"),
    ]


def _conversations_by_uid(mailbox: Mailbox) -> set[frozenset[int]]:
    groups: dict[object, set[int]] = {}
    for copy in MessageCopy.objects.filter(mailbox=mailbox).select_related("message"):
        groups.setdefault(copy.message.conversation_id, set()).add(copy.uid)
    return {frozenset(uids) for uids in groups.values()}


def test_threading_in_a_batch_matches_storing_one_at_a_time(alice_mailbox: Mailbox, charlie_mailbox: Mailbox) -> None:
    # Each organization's own address is the recipient: it never counts as a shared participant.
    sample = _thread_sample(alice_mailbox.email_address)
    for uid, raw in enumerate(sample, start=1):
        message_ingest(mailbox=alice_mailbox, folder=inbox_of(alice_mailbox), uidvalidity=7, uid=uid, raw=raw)
    batch(charlie_mailbox, [IngestItem(uid=uid, raw=raw) for uid, raw in enumerate(_thread_sample(charlie_mailbox.email_address), start=1)])
    sequential = _conversations_by_uid(alice_mailbox)
    assert _conversations_by_uid(charlie_mailbox) == sequential
    assert {1, 2, 3, 4, 5, 6} in sequential  # the sample does exercise merging and the forged ID
    assert {7, 8, 10, 11} in sequential
    counts = {
        mailbox.pk: sorted(
            (copy.message.conversation.message_count, copy.uid)
            for copy in MessageCopy.objects.filter(mailbox=mailbox).select_related("message__conversation")
        )
        for mailbox in (alice_mailbox, charlie_mailbox)
    }
    assert counts[alice_mailbox.pk] == counts[charlie_mailbox.pk]
    for organization_id in (alice_mailbox.organization_id, charlie_mailbox.organization_id):
        assert Message.objects.filter(organization_id=organization_id).count() == len(sample) - 1
        assert Message.objects.filter(organization_id=organization_id, message_id_index="").count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_ingesting_overlapping_batches_at_once_store_each_message_once(alice_mailbox: Mailbox) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); the race needs PostgreSQL")
    workers = 4
    folders = [Folder.objects.create(mailbox=alice_mailbox, name=f"Folder {number}", uidvalidity=7) for number in range(workers)]
    shared_folder = folders[0]
    for round_number in range(3):
        raws = [build_raw(message_id=f"<race{round_number}-{n}@example.test>", text=f"Round {round_number} {n}\n") for n in range(5)]
        raws.append(build_raw(message_id=None, text=f"No id {round_number}\n"))
        barrier = threading.Barrier(workers * 2)
        errors: list[BaseException] = []

        items = [IngestItem(uid=100 * round_number + n, raw=raw) for n, raw in enumerate(raws)]

        def work(
            folder: Folder, items: list[IngestItem] = items, barrier: threading.Barrier = barrier, errors: list[BaseException] = errors
        ) -> None:
            try:
                barrier.wait()
                messages_ingest_batch(mailbox=alice_mailbox, folder=folder, uidvalidity=7, items=items)
            except BaseException as error:
                errors.append(error)
            finally:
                connection.close()

        # Each folder twice: two workers racing for the same server copies, too.
        threads = [threading.Thread(target=work, args=(folder,)) for folder in folders * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    assert Message.objects.count() == 3 * 6
    assert MessageCopy.objects.count() == 3 * 6 * workers
    assert MessageCopy.objects.filter(folder=shared_folder).count() == 3 * 6


@pytest.fixture
def strict_parser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``strict_parser(pass_name)``: that pass ("import" or "bodies") gets a wall-clock limit that
    a large message cannot meet."""
    made: list[IsolatedParser] = []

    def use(pass_name: str) -> None:
        made.append(IsolatedParser(limits=ProcessLimits(wall_seconds=0.3, cpu_seconds=60)))
        monkeypatch.setitem(isolation._parsers, pass_name, made[-1])

    yield use
    for parser in made:
        parser.close()


@pytest.mark.timeout(60)
def test_r31_a_message_past_the_header_pass_limits_is_kept_raw_and_the_batch_goes_on(
    alice_mailbox: Mailbox, strict_parser: Callable[[str], None]
) -> None:
    strict_parser("import")
    slow = build_raw(subject="Huge", message_id="<huge@example.test>", text="ab\n" * 4_000_000)
    after = build_raw(subject="After", message_id="<after@example.test>", text="Still here\n")
    copies = batch(alice_mailbox, [IngestItem(uid=1, raw=slow), IngestItem(uid=2, raw=after)])
    huge, later = copies[1].message, copies[2].message
    assert huge.quarantine_reason == "parser_timeout"
    assert blob_get(alice_mailbox.key_scope(), huge.raw_blob) == slow
    assert later.quarantine_reason == ""
    assert later.subject == "After"
    assert later.text_body == "Still here\n"


@pytest.mark.timeout(60)
def test_r31_a_body_past_the_body_pass_limits_is_kept_raw_and_the_batch_goes_on(
    alice_mailbox: Mailbox, strict_parser: Callable[[str], None]
) -> None:
    strict_parser("bodies")
    slow = build_raw(subject="Huge", message_id="<huge@example.test>", text="ab\n" * 4_000_000)
    after = build_raw(subject="After", message_id="<after@example.test>", text="Still here\n")
    copies = messages_ingest_batch(
        mailbox=alice_mailbox,
        folder=inbox_of(alice_mailbox),
        uidvalidity=7,
        items=[IngestItem(uid=1, raw=slow), IngestItem(uid=2, raw=after)],
    )
    # Stored from their headers at once: in the list, threaded, raw kept.
    huge, later = (Message.objects.get(pk=copies[uid].message_id) for uid in (1, 2))
    assert huge.body_pending
    assert huge.subject == "Huge"
    assert blob_get(alice_mailbox.key_scope(), huge.raw_blob) == slow
    # The body pass: the huge one is quarantined with the limit's name, the next one filled.
    assert message_bodies_fill(message_ids=[huge.pk, later.pk]) == 2
    huge.refresh_from_db()
    later = Message.objects.get(pk=later.pk)
    assert huge.quarantine_reason == "parser_timeout"
    assert not huge.body_pending
    assert huge.text_body is None
    assert later.text_body == "Still here\n"
    assert later.quarantine_reason == ""


def test_the_batch_path_leaves_bodies_to_the_body_pass_queued_after_commit(
    alice_mailbox: Mailbox, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    raw = build_raw(html="<p>Hello <b>there</b></p>", attachments=(("a.txt", "text/plain", b"attached"),))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        copies = messages_ingest_batch(
            mailbox=alice_mailbox, folder=inbox_of(alice_mailbox), uidvalidity=7, items=[IngestItem(uid=1, raw=raw)]
        )
    assert len(callbacks) == 2  # the body pass, and the conversation's live event (conversations.arrival)
    # The immediate task backend of the tests has run the queued body pass.
    message = Message.objects.get(pk=copies[1].message_id)
    assert not message.body_pending
    assert message.text_body == "Hello,\nmy order never arrived.\n"
    assert message.html_body == "<p>Hello <b>there</b></p>\n"
    assert message.snippet == "Hello, my order never arrived."
    assert message.has_attachments
    assert [attachment.filename for attachment in message.attachments.all()] == ["a.txt"]


def test_a_batch_parsed_beforehand_looks_up_its_stored_messages_once(alice_mailbox: Mailbox) -> None:
    """The sync engine hands over batches whose header pass ran while the batch before was stored:
    nothing is left to overlap with the lookups, so the whole batch is looked up at once."""
    raws = [build_raw(subject=f"Lookup {number}", message_id=f"<lookup-{number}@example.test>") for number in range(60)]
    parsed = list(isolation.import_parser().headers(raws))
    items = [IngestItem(uid=number + 1, raw=raw, parsed=result) for number, (raw, result) in enumerate(zip(raws, parsed, strict=True))]
    with CaptureQueriesContext(connection) as captured:
        messages_ingest_batch(mailbox=alice_mailbox, folder=inbox_of(alice_mailbox), uidvalidity=7, items=items)
    by_content = [
        query
        for query in captured.captured_queries
        if query["sql"].startswith("SELECT id, message_id_index, content_index FROM conversations_message")
    ]
    assert len(by_content) == 2  # before the transaction, and again inside it
    assert MessageCopy.objects.filter(mailbox=alice_mailbox).count() == 60


def test_the_batch_lookups_find_what_the_orm_finds(alice_mailbox: Mailbox, bob_mailbox: Mailbox, charlie_mailbox: Mailbox) -> None:
    """The batch's look-ups by content index, Message-ID and reference are constant SQL texts;
    they find exactly the rows the ORM's queries find, only in the organization."""
    from postroom.conversations.ingest import _KnownMessages
    from postroom.conversations.models import MessageReference
    from postroom.conversations.threading import _CHILDREN_SQL, _HOLDERS_SQL, _rows

    raws = [
        build_raw(message_id="<root@example.test>", subject="Root"),
        build_raw(message_id="<reply@example.test>", in_reply_to="<root@example.test>", references="<root@example.test>"),
        build_raw(message_id=None, subject="No id"),
        build_raw(message_id="<orphan@example.test>", in_reply_to="<missing@example.test>"),
    ]
    batch(alice_mailbox, [IngestItem(uid=number + 1, raw=raw) for number, raw in enumerate(raws)])
    batch(bob_mailbox, [IngestItem(uid=1, raw=raws[1]), IngestItem(uid=2, raw=build_raw(message_id="<bob@example.test>"))])
    batch(charlie_mailbox, [IngestItem(uid=number + 1, raw=raw) for number, raw in enumerate(raws)])  # another organization
    organization_id = alice_mailbox.organization_id
    messages = Message.objects.filter(organization_id=organization_id)
    content_indexes = [*messages.values_list("content_index", flat=True), "0" * 64]
    known = _KnownMessages(organization_id, content_indexes)
    expected: dict[str, list[tuple[Any, str, str]]] = {}
    for message in messages.order_by("pk"):
        expected.setdefault(message.content_index, []).append((message.pk, message.message_id_index, message.content_index))
    assert {index: [tuple(row) for row in rows] for index, rows in known.by_content.items()} == expected

    indexes = {*messages.values_list("message_id_index", flat=True), *MessageReference.objects.values_list("message_id_index", flat=True)}
    indexes.discard("")
    assert len(indexes) == 7  # five of this organization, two of the other's (its own blind indexes)
    holders = sorted(_rows(_HOLDERS_SQL, organization_id, indexes))
    assert [
        (index, str(pk).replace("-", ""), content, str(conversation).replace("-", "")) for index, pk, content, conversation in holders
    ] == [
        (index, pk.hex, content, conversation.hex)
        for index, pk, content, conversation in sorted(
            messages.filter(message_id_index__in=indexes).values_list("message_id_index", "pk", "content_index", "conversation_id")
        )
    ]
    children = sorted(_rows(_CHILDREN_SQL, organization_id, indexes))
    expected_children = sorted(
        MessageReference.objects.filter(organization_id=organization_id, message_id_index__in=indexes).values_list(
            "message_id_index", "message__conversation_id"
        )
    )
    assert len(expected_children) == 2  # the reply points at the root, the orphan at a message never stored
    assert [(index, str(conversation).replace("-", "")) for index, conversation in children] == [
        (index, conversation.hex) for index, conversation in expected_children
    ]


def test_the_subject_lookup_finds_what_the_orm_finds(alice_mailbox: Mailbox, charlie_mailbox: Mailbox) -> None:
    """The conversations with one of the batch's subjects in its window, found by the subject's
    index: the ORM's rows, at the window's edges too, and only in the organization."""
    from postroom.conversations.models import Conversation
    from postroom.conversations.threading import _SUBJECT_SQL
    from postroom.core.bulk import as_uuid, values_parameter

    start = datetime(2025, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    raws = [
        build_raw(message_id=f"<s{day}@example.test>", subject=f"Topic {day % 3}", date=start + timedelta(days=day)) for day in range(9)
    ]
    batch(alice_mailbox, [IngestItem(uid=number + 1, raw=raw) for number, raw in enumerate(raws)])
    batch(charlie_mailbox, [IngestItem(uid=number + 1, raw=raw) for number, raw in enumerate(raws)])
    organization_id = alice_mailbox.organization_id
    conversations = Conversation.objects.filter(organization_id=organization_id)
    stored = sorted(conversations.values_list("last_message_at", flat=True))
    subjects = set(conversations.values_list("subject_index", flat=True)) | {"0" * 64}
    for earliest, latest in [(stored[0], stored[-1]), (stored[1], stored[-2]), (stored[0] - timedelta(days=1), stored[0])]:
        with connection.cursor() as cursor:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.execute(_SUBJECT_SQL[connection.vendor], [values_parameter(subjects), organization_id, adapt(earliest), adapt(latest)])
            found = {as_uuid(pk) for (pk,) in cursor.fetchall()}
        expected = set(
            conversations.filter(subject_index__in=subjects, last_message_at__gte=earliest, last_message_at__lte=latest).values_list(
                "pk", flat=True
            )
        )
        assert found == expected
        assert found
