"""Import and export of a book (R41 for the CSV), merging, likely duplicates."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.contacts import actions, selectors, transfer
from postroom.contacts.cards import Card, card_clean
from postroom.contacts.models import Contact, ContactEmail

pytestmark = pytest.mark.django_db

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "\tTab", "\rCR", "  =spaced"]


def _export(client, book) -> list[list[str]]:  # type: ignore[no-untyped-def]
    response = client.post(f"/o/acme/contacts/books/{book.pk}/export.csv")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_r41_csv_export_neutralises_formulas(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    for number, hostile in enumerate(HOSTILE):
        card = card_clean(name=f"Person {number}", emails=[f"p{number}@example.org"], company=hostile.strip("\r\t"), notes=hostile)
        card.company = hostile  # as an older version might have stored it: the export must not trust the card
        actions.contact_create(actor=cast.alice_membership, book=book, card=card)
    rows = _export(client_as(cast.alice), book)
    assert rows[0] == transfer.EXPORT_HEADER
    for row in rows[1:]:
        for cell in row:
            assert not cell.lstrip().startswith(("=", "+", "-", "@", "\t", "\r")), cell
    companies = {row[3] for row in rows[1:]}
    assert '\'=HYPERLINK("http://evil.example","x")' in companies
    assert "'@SUM(A1)" in companies
    assert AuditEvent.objects.filter(action="contacts.book_exported").count() == 1
    # The export carries no address or name into the audit log.
    assert "example.org" not in str(AuditEvent.objects.get(action="contacts.book_exported").details)


def test_an_export_imports_back_unchanged(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    original = card_clean(
        name="Dana, Customer", emails=["dana@customer.example", "d@other.example"], phones=["+1 555 0100", "-42"], company="=Acme",
        job_title="Buyer", notes="Line one\nline two", fields=[["Account", "=42"], ["Tier", "gold"]],
    )  # fmt: skip
    actions.contact_create(actor=cast.alice_membership, book=book, card=original)
    content = "".join(transfer.book_export_rows(actor=cast.alice_membership, book=book)).encode()
    target = actions.book_create(actor=cast.alice_membership, name="Copy")
    report = transfer.book_import(actor=cast.alice_membership, book=target, content=content, file_format="csv")
    assert (report.created, report.merged, report.rejected) == (1, 0, [])
    assert Card.from_json(Contact.objects.get(book=target).card) == original


def test_csv_import_reports_bad_rows_and_keeps_the_rest(cast: Cast) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    actions.contact_create(actor=cast.alice_membership, book=book, card=card_clean(name="Dana", emails=["dana@customer.example"]))
    content = (
        "First Name,Last Name,E-mail Address,Mobile Phone,Company,Favourite colour\r\n"
        "Eve,Example,eve@example.org,+44 20 7946 0000,Example Ltd,green\r\n"
        "Bad,Address,not-an-address,,,\r\n"
        ",,,,,\r\n"
        "Dana,Again,DANA@customer.example,+1 555,,\r\n"
        "Nobody,,,,,\r\n"
        f"Long,Notes,long@example.org,{'9' * 50},,\r\n"
    ).encode()
    report = transfer.book_import(actor=cast.alice_membership, book=book, content=content, file_format="csv")
    assert (report.created, report.merged) == (2, 1)
    assert [number for number, _reason in report.rejected] == [3, 7]
    assert "not-an-address" in report.rejected[0][1]
    assert "phones" in report.rejected[1][1]
    eve = next(contact for contact in Contact.objects.filter(book=book) if "eve@example.org" in (Card.from_json(contact.card).emails or []))
    card = Card.from_json(eve.card)
    assert (card.name, card.phones, card.company, card.fields) == (
        "Eve Example",
        ["+44 20 7946 0000"],
        "Example Ltd",
        [["Favourite colour", "green"]],
    )
    dana = selectors.contacts_by_address(actor=cast.alice_membership, address="dana@customer.example")
    assert len(dana) == 1
    assert Card.from_json(dana[0].card).phones == ["+1 555"]


def test_import_refuses_unusable_files_clearly(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    with pytest.raises(transfer.ImportRefusedError, match="name or an email column"):
        transfer.book_import(actor=cast.alice_membership, book=book, content=b"foo,bar\r\n1,2\r\n", file_format="csv")
    with pytest.raises(transfer.ImportRefusedError, match="not a vCard"):
        transfer.book_import(actor=cast.alice_membership, book=book, content=b"hello", file_format="vcard")
    with pytest.raises(transfer.ImportRefusedError, match="not a text file"):
        transfer.book_import(actor=cast.alice_membership, book=book, content=b"PK\x03\x04\x00\x00", file_format="csv")
    response = client_as(cast.alice).post(
        f"/o/acme/contacts/books/{book.pk}/import/", {"file": io.BytesIO(b"foo,bar\r\n")}, format="multipart"
    )
    assert response.status_code == 200
    assert "none is a name or an email column" in response.content.decode()
    assert not Contact.objects.exists()


VCARD = """BEGIN:VCARD\r
VERSION:3.0\r
N:Customer;Dana;;Dr.;\r
FN:Dr. Dana Customer\r
EMAIL;TYPE=INTERNET,WORK:dana@customer.example\r
EMAIL;TYPE=HOME:dana@home.example\r
TEL;TYPE=CELL:+1 555 0100\r
ORG:Customer Ltd;Purchasing\r
TITLE:Head of purchasing\r
NOTE:Prefers mail\\, not calls.\\nCall only if urgent.\r
URL:https://customer.example\r
PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQ\r
 AAAQABAAD\r
END:VCARD\r
BEGIN:VCARD\r
VERSION:2.1\r
N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=B6rg\r
EMAIL;INTERNET:joerg@example.de\r
END:VCARD\r
BEGIN:VCARD\r
VERSION:4.0\r
FN:Broken\r
EMAIL:broken-at-example\r
END:VCARD\r
BEGIN:VCARD\r
VERSION:4.0\r
FN:Truncated\r
"""


def test_vcard_import(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    response = client_as(cast.alice).post(
        f"/o/acme/contacts/books/{book.pk}/import/", {"file": io.BytesIO(VCARD.encode())}, format="multipart"
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Entry 3" in page
    assert "Entry 4" in page
    assert "no END:VCARD" in page
    cards = {card.name: card for card in (Card.from_json(contact.card) for contact in Contact.objects.filter(book=book))}
    assert set(cards) == {"Dr. Dana Customer", "Jörg Müller"}
    dana = cards["Dr. Dana Customer"]
    assert dana.emails == ["dana@customer.example", "dana@home.example"]
    assert (dana.phones, dana.company, dana.job_title) == (["+1 555 0100"], "Customer Ltd Purchasing", "Head of purchasing")
    assert dana.notes == "Prefers mail, not calls.\nCall only if urgent."
    assert dana.fields == [["url", "https://customer.example"]]
    assert ContactEmail.objects.filter(book=book).count() == 3


def test_a_big_import_makes_no_query_per_row(cast: Cast) -> None:
    """Bulk inserts in batches, no query per row (speed: bench/contacts_import.py)."""
    book = actions.book_default(actor=cast.alice_membership)

    def queries(rows: int, offset: int) -> int:
        lines = ["name,email,phone"] + [
            f"Person {number},p{number}@example.org,+1 555 {number:04d}" for number in range(offset, offset + rows)
        ]
        with CaptureQueriesContext(connection) as captured:
            report = transfer.book_import(actor=cast.alice_membership, book=book, content="\r\n".join(lines).encode(), file_format="csv")
        assert report.created == rows
        return len(captured.captured_queries)

    # A first import warms what any later one finds cached (the organization's data key), which
    # otherwise depends on what ran before in this process.
    queries(1, 50_000)
    # Only batched inserts grow (SQLite caps the parameters of one statement): far from a query per row.
    assert queries(500, 0) < 500 / 20
    assert queries(5_000, 10_000) < 5_000 / 20


def test_merge_unions_and_keeps_one(cast: Cast, client_as) -> None:
    book = actions.book_default(actor=cast.alice_membership)
    kept = actions.contact_create(actor=cast.alice_membership, book=book, card=card_clean(
        name="Dana Customer", emails=["dana@customer.example"], phones=["+1 555"], fields=[["Tier", "gold"]],
    ))  # fmt: skip
    other = actions.contact_create(actor=cast.alice_membership, book=book, card=card_clean(
        name="dana  customer", emails=["dana@customer.example", "dana@home.example"], phones=["+1 777"], company="Customer Ltd",
        fields=[["Tier", "gold"], ["Account", "42"]],
    ))  # fmt: skip
    lone = actions.contact_create(actor=cast.alice_membership, book=book, card=card_clean(name="Eve", emails=["eve@example.org"]))
    same_name = actions.contact_create(actor=cast.alice_membership, book=book, card=card_clean(name="ÉVE", emails=["eve2@example.org"]))
    groups = selectors.book_duplicates(actor=cast.alice_membership, book=book)
    assert sorted(sorted(contact.pk for contact in group) for group in groups) == sorted(
        [sorted([kept.pk, other.pk]), sorted([lone.pk, same_name.pk])]
    )
    page = client_as(cast.alice).get(f"/o/acme/contacts/books/{book.pk}/duplicates/").content.decode()
    assert f'value="{other.pk}"' in page

    response = client_as(cast.alice).post(f"/o/acme/contacts/people/{kept.pk}/merge/", {"other": str(other.pk)})
    assert response.status_code == 302
    assert not Contact.objects.filter(pk=other.pk).exists()
    card = Card.from_json(Contact.objects.get(pk=kept.pk).card)
    assert card.emails == ["dana@customer.example", "dana@home.example"]
    assert (card.phones, card.company, card.fields) == (["+1 555", "+1 777"], "Customer Ltd", [["Tier", "gold"], ["Account", "42"]])
    assert ContactEmail.objects.filter(contact_id=kept.pk).count() == 2
    # Bob cannot merge Alice's contacts (404: he cannot see them).
    assert client_as(cast.bob).post(f"/o/acme/contacts/people/{lone.pk}/merge/", {"other": str(same_name.pk)}).status_code == 404
