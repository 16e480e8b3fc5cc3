"""A big contact import (more than ``IMPORT_AT_ONCE_ROWS`` entries, beyond the old 20,000-row
limit) runs as a task in chunks, and the import page shows its progress (done of total) while it
runs, then its report; only its author sees it; a run whose author lost write access imports
nothing and says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tasks.backends.dummy import DummyBackend

from postroom.conftest import Cast
from postroom.contacts import actions, transfer
from postroom.contacts.models import BookKind, BookShare, Contact, ContactImport, ImportStatus
from postroom.orgs.models import Team, TeamMembership

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_queued(queue: DummyBackend, django_capture_on_commit_callbacks: Any) -> Callable[[], int]:
    def run() -> int:
        ran = 0
        while queue.results:
            result = queue.results.pop(0)
            with django_capture_on_commit_callbacks(execute=True):
                result.task.call(*result.args, **result.kwargs)
            ran += 1
        return ran

    return run


def csv_file(rows: int, *, bad_every: int = 0) -> SimpleUploadedFile:
    lines = ["name,email,company"]
    for number in range(rows):
        address = "not an address" if bad_every and number % bad_every == 0 else f"person{number}@example.org"
        lines.append(f"Person {number},{address},Acme")
    return SimpleUploadedFile("contacts.csv", ("\n".join(lines) + "\n").encode(), content_type="text/csv")


def post_import(client: Any, book: Any, upload: SimpleUploadedFile, capture: Any) -> Any:
    with capture(execute=True):
        return client.post(f"/o/acme/contacts/books/{book.pk}/import/", {"file": upload})


def test_a_big_import_runs_as_a_task_and_the_page_shows_its_progress(
    cast: Cast, client_as: Any, run_queued: Callable[[], int], django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    actions.contact_create(actor=cast.alice_membership, book=book, card=transfer.card_clean(name="Old", emails=["person7@example.org"]))
    alice = client_as(cast.alice)
    rows = 2 * transfer.IMPORT_CHUNK + 150  # three chunks, above the at-once limit
    monkeypatch.setattr(transfer, "IMPORT_AT_ONCE_ROWS", transfer.IMPORT_CHUNK)
    answer = post_import(alice, book, csv_file(rows, bad_every=100), django_capture_on_commit_callbacks)
    assert answer.status_code == 302  # back to the page, which shows the progress
    job = ContactImport.objects.get()
    assert (job.status, job.total, job.done) == (ImportStatus.QUEUED, rows, 0)
    waiting = alice.get(answer["Location"]).content.decode()
    assert f"0</span> of <span data-import-total>{rows}</span> entries" in waiting
    assert 'hx-trigger="every 1s"' in waiting  # the page polls while the import runs
    assert Contact.objects.filter(book=book).count() == 1  # nothing yet: the task does it

    # What the page shows after each chunk, as the member's polling would see it.
    seen: list[str] = []
    real = transfer._import_cards

    def watched(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        poll = alice.get(f"/o/acme/contacts/books/{book.pk}/import/", headers={"HX-Request": "true"}).content.decode()
        seen.append(poll.split("data-import-done>")[1].split("<")[0])

    monkeypatch.setattr(transfer, "_import_cards", watched)
    assert run_queued() == 1
    # The page is read between chunks (each chunk commits its own progress).
    assert seen == ["0", str(transfer.IMPORT_CHUNK), str(2 * transfer.IMPORT_CHUNK)]
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == (ImportStatus.DONE, rows, rows)
    assert job.rejected_count == len(range(0, rows, 100))
    assert job.merged == 1  # person7 was already in the book
    assert job.created == rows - job.rejected_count - 1
    assert job.content is None  # the file is not kept
    assert Contact.objects.filter(book=book).count() == job.created + 1
    done = alice.get(f"/o/acme/contacts/books/{book.pk}/import/").content.decode()
    assert "Import done:" in done
    assert "every 1s" not in done  # no more polling
    assert "Entry 2:" in done  # the rejected rows, by line (the first after the header is 2)
    assert run_queued() == 0
    transfer.book_import_run(import_id=job.pk)  # a second run of the same task does nothing
    assert Contact.objects.filter(book=book).count() == job.created + 1


def test_more_than_the_old_20000_rows_are_imported(
    cast: Cast, client_as: Any, run_queued: Callable[[], int], django_capture_on_commit_callbacks: Any
) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    answer = post_import(client_as(cast.alice), book, csv_file(20_100), django_capture_on_commit_callbacks)
    assert answer.status_code == 302
    run_queued()
    job = ContactImport.objects.get()
    assert (job.status, job.done, job.created) == (ImportStatus.DONE, 20_100, 20_100)
    assert Contact.objects.filter(book=book).count() == 20_100


def test_a_small_file_is_still_imported_at_once(cast: Cast, client_as: Any, queue: DummyBackend) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    page = client_as(cast.alice).post(f"/o/acme/contacts/books/{book.pk}/import/", {"file": csv_file(20)})
    assert page.status_code == 200
    assert "20</strong> contacts added" in page.content.decode()
    assert not ContactImport.objects.exists()
    assert queue.results == []


def test_only_the_author_sees_an_import_and_a_lost_write_access_imports_nothing(
    cast: Cast, client_as: Any, run_queued: Callable[[], int], django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(transfer, "IMPORT_AT_ONCE_ROWS", 10)
    team = Team.objects.create(organization=cast.org_a, name="Sales")
    TeamMembership.objects.create(team=team, membership=cast.bob_membership)
    book = actions.book_create(actor=cast.alice_membership, name="Leads")
    BookShare.objects.create(book=book, team=team, can_write=True)
    post_import(client_as(cast.bob), book, csv_file(50), django_capture_on_commit_callbacks)  # Bob, through the share
    job = ContactImport.objects.get()
    assert job.actor == cast.bob_membership
    # Alice (the book's owner) does not see Bob's import; Charlie sees no book at all.
    assert "data-import-done" not in client_as(cast.alice).get(f"/o/acme/contacts/books/{book.pk}/import/").content.decode()
    assert client_as(cast.charlie).get(f"/o/acme/contacts/books/{book.pk}/import/").status_code == 404
    assert "data-import-done" in client_as(cast.bob).get(f"/o/acme/contacts/books/{book.pk}/import/").content.decode()

    BookShare.objects.filter(book=book).delete()  # before the task runs, Bob loses his write access
    run_queued()
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED
    assert job.error
    assert not Contact.objects.filter(book=book).exists()
    assert book.kind == BookKind.PERSONAL
