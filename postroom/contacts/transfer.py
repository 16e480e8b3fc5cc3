"""Import and export of a contact book: CSV both ways, vCard (3.0 and 4.0, and 2.1's
quoted-printable) in.

Attacker: whoever wrote the file being imported (a contact list from anywhere), and whoever
wrote a contact that a teammate exports and opens in a spreadsheet (R41). Defences:
- export writes every cell through ``core.csv``, which neutralises cells a spreadsheet would run
  as a formula (starting with = + - @ tab or CR, after any spaces); import takes that quote off
  again, so an export imports back unchanged;
- import is bounded (``MAX_IMPORT_BYTES``, ``MAX_IMPORT_ROWS``), every card goes through
  ``cards.card_clean`` like any other input, and nothing from the file is ever evaluated;
- vCard is read by the small parser below, not a library: we need seven properties, and a parser
  this size is easier to bound and review than a general one (it never decodes PHOTO, KEY or
  other binary properties, which are most of a big vCard file's size).

Nothing is lost: a row the cleaner refuses is reported with its row number and the reason, and
the other rows are imported; a column or vCard property we have no field for is kept as a custom
field; a row whose address is already in the book is merged into that contact (addresses, phones
and fields unioned), not duplicated. The import is one transaction: all the accepted rows, or none.
"""

from __future__ import annotations

import csv
import io
import json
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.contacts.actions import _new_contact, _require, _store_card
from postroom.contacts.cards import MAX_FIELDS, Card, address_index, card_clean, card_union
from postroom.contacts.models import Contact, ContactBook, ContactEmail, ContactImport, ContactSource, ImportStatus
from postroom.core.csv import FORMULA_TRIGGERS, csv_rows
from postroom.core.ids import uuid7
from postroom.orgs.models import Membership

MAX_IMPORT_BYTES = 10 * 1024 * 1024
MAX_IMPORT_ROWS = 100_000
# Up to this many entries, the import runs in the request; more, in a task with progress.
IMPORT_AT_ONCE_ROWS = 1_000
IMPORT_CHUNK = 500
MAX_REPORTED_REJECTIONS = 1_000  # rows listed on the page after a big import (all are counted)
EXPORT_HEADER = ["name", "emails", "phones", "company", "job_title", "notes", "custom_fields"]
_LIST_SEPARATOR = re.compile(r"[;,\s]+")


@dataclass
class ImportReport:
    created: int = 0
    merged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row or card number, reason)

    @property
    def total(self) -> int:
        return self.created + self.merged + len(self.rejected)


class ImportRefusedError(ValidationError):
    """The whole file is unusable (too big, not text, no columns we know)."""


# Export -------------------------------------------------------------------------------------------


def book_export_rows(*, actor: Membership, book: ContactBook, request: HttpRequest | None = None) -> Iterator[str]:
    """The book as CSV lines, formula-safe (R41); the export is audited (a count, no content)."""
    _require(actor, book)
    contacts = list(Contact.objects.filter(book=book, organization_id=actor.organization_id).order_by("created_at", "pk"))
    audit_record(action="contacts.book_exported", actor=actor.user, organization=actor.organization, request=request, target=book,
                 details={"contacts": len(contacts)})  # fmt: skip

    def rows() -> Iterable[list[object]]:
        for contact in contacts:
            card = Card.from_json(contact.card)
            yield [
                card.name, "; ".join(card.emails or []), "; ".join(card.phones or []), card.company, card.job_title, card.notes,
                json.dumps(card.fields, ensure_ascii=False) if card.fields else "",
            ]  # fmt: skip

    return iter(csv_rows(EXPORT_HEADER, rows()))


# Import -------------------------------------------------------------------------------------------


def _text_of(content: bytes) -> str:
    if len(content) > MAX_IMPORT_BYTES:
        raise ImportRefusedError(f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split it and import the parts.")
    if b"\x00" in content[:4096]:
        raise ImportRefusedError("This is not a text file: export the contacts as CSV or vCard and try again.")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252", errors="replace")


def _unneutralise(value: str) -> str:
    """Undo ``core.csv.neutralise_cell`` on values we exported."""
    if value.startswith("'") and value[1:].lstrip().startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value


_COLUMN_ALIASES = {
    "name": "name", "full name": "name", "display name": "name", "fn": "name",
    "first name": "first", "given name": "first", "last name": "last", "family name": "last", "surname": "last",
    "company": "company", "organization": "company", "organisation": "company", "organization name": "company", "org": "company",
    "job title": "job_title", "job_title": "job_title", "title": "job_title", "organization title": "job_title",
    "notes": "notes", "note": "notes", "custom_fields": "fields", "custom fields": "fields",
}  # fmt: skip


def _column_kind(header: str) -> str:
    key = " ".join(header.strip().casefold().replace("-", " ").replace("_", " ").split())
    if header.strip().casefold() in _COLUMN_ALIASES:
        return _COLUMN_ALIASES[header.strip().casefold()]
    if key in _COLUMN_ALIASES:
        return _COLUMN_ALIASES[key]
    if "mail" in key:
        return "emails"
    if "phone" in key or "mobile" in key or key.startswith("tel"):
        return "phones"
    return "other"


def _csv_cards(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, card values or the reason the row is unusable), row 1 being the header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise ImportRefusedError("The file is empty or not CSV.") from None
    kinds = [_column_kind(column) for column in header]
    if not {"name", "first", "last", "emails"} & set(kinds):
        raise ImportRefusedError("The first row must name the columns; none is a name or an email column.")
    row_number = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            row_number += 1
            yield row_number, f"not valid CSV ({error})"
            continue
        row_number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        values: dict[str, Any] = {"emails": [], "phones": [], "fields": []}
        first = last = ""
        for kind, column, raw in zip(kinds, header, row, strict=False):
            cell = _unneutralise(raw).strip()
            if not cell:
                continue
            if kind == "emails":
                values["emails"] += [part for part in _LIST_SEPARATOR.split(cell) if part]
            elif kind == "phones":
                values["phones"] += [part.strip() for part in re.split(r"[;\n]", cell) if part.strip()]
            elif kind == "first":
                first = cell
            elif kind == "last":
                last = cell
            elif kind == "fields":
                try:
                    pairs = json.loads(cell)
                    values["fields"] += [list(pair) for pair in pairs]
                except (ValueError, TypeError):
                    values["fields"].append([column.strip(), cell])
            elif kind == "other":
                values["fields"].append([column.strip()[:60] or "field", cell])
            else:
                values[kind] = cell
        if len(row) > len(header):
            extra = [cell for cell in row[len(header) :] if cell.strip()]
            if extra:
                values["fields"].append(["extra", " | ".join(extra)])
        if not values.get("name") and (first or last):
            values["name"] = f"{first} {last}".strip()
        yield row_number, values


def _vcard_unfold(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line[1:]
        elif lines and lines[-1].endswith("=") and "QUOTED-PRINTABLE" in lines[-1].split(":", 1)[0].upper():
            lines[-1] = lines[-1][:-1] + line  # a quoted-printable soft line break (vCard 2.1)
        else:
            lines.append(line)
    return lines


def _vcard_unescape(value: str) -> str:
    return re.sub(r"\\([\\,;nN])", lambda match: "\n" if match[1] in "nN" else match[1], value)


def _vcard_components(value: str) -> list[str]:
    return [_vcard_unescape(part) for part in re.split(r"(?<!\\);", value)]


_VCARD_SKIPPED = {"BEGIN", "END", "VERSION", "PRODID", "UID", "REV", "PHOTO", "LOGO", "SOUND", "KEY", "N", "FN", "EMAIL", "TEL",
                  "ORG", "TITLE", "NOTE", "CATEGORIES", "X-ABUID", "X-ABLABEL", "KIND", "SOURCE", "CLIENTPIDMAP"}  # fmt: skip


def _vcard_cards(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(card number, card values or the reason it is unusable)."""
    number = 0
    current: dict[str, Any] | None = None
    structured_name: list[str] = []
    saw_card = False
    for line in _vcard_unfold(text):
        if not line.strip():
            continue
        head, separator, value = line.partition(":")
        if not separator:
            continue
        name, *parameters = head.split(";")
        name = name.rsplit(".", 1)[-1].upper()  # "item1.EMAIL" → EMAIL
        parameter_text = ";".join(parameters).upper()
        if "QUOTED-PRINTABLE" in parameter_text:
            charset = re.search(r"CHARSET=([\w-]+)", parameter_text)
            try:
                value = quopri.decodestring(value.encode("latin-1", errors="replace")).decode(
                    charset[1] if charset else "utf-8", errors="replace"
                )
            except LookupError:
                value = quopri.decodestring(value.encode("latin-1", errors="replace")).decode("utf-8", errors="replace")
        if name == "BEGIN" and value.strip().upper() == "VCARD":
            number += 1
            saw_card = True
            current, structured_name = {"emails": [], "phones": [], "fields": []}, []
            continue
        if current is None:
            continue
        if name == "END" and value.strip().upper() == "VCARD":
            if not current.get("name") and structured_name:
                family, given, additional, prefix, suffix = [*structured_name, "", "", "", "", ""][:5]
                current["name"] = " ".join(part for part in (prefix, given, additional, family, suffix) if part.strip())
            yield number, current
            current = None
            continue
        if name == "FN":
            current["name"] = _vcard_unescape(value).strip()
        elif name == "N":
            structured_name = [part.strip() for part in _vcard_components(value)]
        elif name == "EMAIL":
            current["emails"].append(_vcard_unescape(value).strip().removeprefix("mailto:"))
        elif name == "TEL":
            current["phones"].append(_vcard_unescape(value).strip().removeprefix("tel:"))
        elif name == "ORG":
            current["company"] = " ".join(part for part in _vcard_components(value) if part.strip()).strip()
        elif name == "TITLE":
            current["job_title"] = _vcard_unescape(value).strip()
        elif name == "NOTE":
            current["notes"] = _vcard_unescape(value).strip()
        elif name not in _VCARD_SKIPPED and value.strip() and len(current["fields"]) < MAX_FIELDS:
            current["fields"].append([name.lower(), _vcard_unescape(value).strip()[:1000]])
    if current is not None:
        yield number, "the card has no END:VCARD line"
    if not saw_card:
        raise ImportRefusedError("No BEGIN:VCARD found: this is not a vCard file.")


def _entries(text: str, file_format: str) -> list[tuple[int, dict[str, Any] | str]]:
    entries: list[tuple[int, dict[str, Any] | str]] = []
    for entry in _csv_cards(text) if file_format == "csv" else _vcard_cards(text):
        if len(entries) >= MAX_IMPORT_ROWS:
            raise ImportRefusedError(f"The file has more than {MAX_IMPORT_ROWS} contacts; split it and import the parts.")
        entries.append(entry)
    return entries


def _cleaned(entries: Iterable[tuple[int, dict[str, Any] | str]], report: ImportReport) -> list[tuple[int, Card]]:
    cards: list[tuple[int, Card]] = []
    for number, values in entries:
        if isinstance(values, str):
            report.rejected.append((number, values))
            continue
        try:
            cards.append((number, card_clean(**values)))
        except ValidationError as error:
            report.rejected.append((number, "; ".join(f"{key}: {' '.join(messages)}" for key, messages in error.message_dict.items())))
    return cards


def book_import_start(
    *, actor: Membership, book: ContactBook, content: bytes, file_format: str, request: HttpRequest | None = None
) -> ImportReport | ContactImport:
    """Import a file now (small: the report) or queue it as a task (big: the ``ContactImport``
    whose progress the import page shows)."""
    _require(actor, book, write=True)
    text = _text_of(content)
    entries = _entries(text, file_format)
    if len(entries) <= IMPORT_AT_ONCE_ROWS:
        return _import_now(actor=actor, book=book, entries=entries, file_format=file_format, request=request)
    job = ContactImport(organization_id=book.organization_id, book=book, actor=actor, file_format=file_format, total=len(entries))
    job.content = text
    with transaction.atomic():
        job.save()
        audit_record(action="contacts.book_import_queued", actor=actor.user, organization=actor.organization, request=request,
                     target=book, details={"format": file_format, "entries": len(entries)})  # fmt: skip
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(import_id: Any) -> None:
    from postroom.contacts.tasks import contacts_import_run

    contacts_import_run.enqueue(str(import_id))


def book_import_run(*, import_id: Any) -> ContactImport | None:
    """The task's body: import a queued ``ContactImport`` chunk by chunk, recording progress
    after each. Claimed with a conditional UPDATE, so a second run of the same task does nothing;
    the member's right to write to the book is checked again first."""
    if not ContactImport.objects.filter(pk=import_id, status=ImportStatus.QUEUED).update(status=ImportStatus.RUNNING):
        return None
    job = ContactImport.objects.select_related("book", "actor__user", "actor__organization").get(pk=import_id)
    report = ImportReport()
    try:
        _require(job.actor, job.book, write=True)
        entries = _entries(job.content or "", job.file_format)
        ContactImport.objects.filter(pk=job.pk).update(total=len(entries))
        owner_of = dict(ContactEmail.objects.filter(book=job.book).values_list("address_index", "contact_id"))
        for start in range(0, len(entries), IMPORT_CHUNK):
            chunk = entries[start : start + IMPORT_CHUNK]
            cards = _cleaned(chunk, report)
            with transaction.atomic():
                _import_cards(job.actor, job.book, cards, report, owner_of=owner_of)
                ContactImport.objects.filter(pk=job.pk).update(
                    done=start + len(chunk), created=report.created, merged=report.merged, rejected_count=len(report.rejected)
                )
    except (ValidationError, PermissionDenied, Http404) as error:
        reason = (
            error.messages[0] if isinstance(error, ValidationError)
            else str(error) if isinstance(error, PermissionDenied) else "The book is gone, or you can no longer see it."
        )  # fmt: skip
        return _finish(job, report, status=ImportStatus.FAILED, error=reason)
    return _finish(job, report, status=ImportStatus.DONE, error="")


def _finish(job: ContactImport, report: ImportReport, *, status: str, error: str) -> ContactImport:
    with transaction.atomic():
        job = ContactImport.objects.select_for_update().get(pk=job.pk)
        job.status, job.error, job.finished_at = status, error[:200], timezone.now()
        job.created, job.merged, job.rejected_count = report.created, report.merged, len(report.rejected)
        if status == ImportStatus.DONE:
            job.done = job.total
        job.rejected = [list(item) for item in report.rejected[:MAX_REPORTED_REJECTIONS]]
        job.content = None  # the file is not kept once imported
        job.save()
        audit_record(action="contacts.book_imported", actor=job.actor.user, organization=job.actor.organization, target=job.book,
                     result="success" if status == ImportStatus.DONE else "failure",
                     details={"format": job.file_format, "created": report.created, "merged": report.merged,
                              "rejected": len(report.rejected)})  # fmt: skip
    return job


def book_import(
    *, actor: Membership, book: ContactBook, content: bytes, file_format: str, request: HttpRequest | None = None
) -> ImportReport:
    """Import a CSV or vCard file into ``book`` at once, whatever its size (the command line and
    tests; pages and the API call ``book_import_start``); see the module docstring."""
    _require(actor, book, write=True)
    entries = _entries(_text_of(content), file_format)
    return _import_now(actor=actor, book=book, entries=entries, file_format=file_format, request=request)


def _import_now(
    *, actor: Membership, book: ContactBook, entries: list[tuple[int, dict[str, Any] | str]], file_format: str, request: HttpRequest | None
) -> ImportReport:
    report = ImportReport()
    cards = _cleaned(entries, report)
    with transaction.atomic():
        _import_cards(actor, book, cards, report)
        audit_record(action="contacts.book_imported", actor=actor.user, organization=actor.organization, request=request, target=book,
                     details={"format": file_format, "created": report.created, "merged": report.merged, "rejected": len(report.rejected)})  # fmt: skip
    return report


def _import_cards(actor: Membership, book: ContactBook, cards: list[tuple[int, Card]], report: ImportReport, *,
                  owner_of: dict[str, Any] | None = None) -> None:  # fmt: skip
    """``owner_of`` (address index → contact id) is kept by a chunked import across its chunks."""
    organization_id = book.organization_id
    if owner_of is None:
        owner_of = dict(ContactEmail.objects.filter(book=book).values_list("address_index", "contact_id"))
    updated: dict[Any, Card] = {}
    new: dict[Any, Card] = {}
    for _number, card in cards:
        indexes = [address_index(organization_id, email) for email in card.emails or []]
        target = next((owner_of[index] for index in indexes if index in owner_of), None)
        if target is None:
            target = uuid7()
            new[target] = card
            report.created += 1
        elif target in new:
            new[target] = card_union(new[target], card)
            report.merged += 1
        else:
            if target not in updated:
                updated[target] = Card.from_json(Contact.objects.get(pk=target).card)
            updated[target] = card_union(updated[target], card)
            report.merged += 1
        for index in indexes:
            owner_of.setdefault(index, target)
    contacts: list[Contact] = []
    emails: list[ContactEmail] = []
    for pk, card in new.items():
        contact, contact_emails = _new_contact(book, card, source=ContactSource.IMPORT, actor=actor, pk=pk)
        contacts.append(contact)
        emails += contact_emails
    Contact.objects.bulk_create(contacts, batch_size=500)
    ContactEmail.objects.bulk_create(emails, batch_size=1000, ignore_conflicts=True)
    for contact in Contact.objects.filter(pk__in=list(updated)):
        _store_card(contact, updated[contact.pk])
