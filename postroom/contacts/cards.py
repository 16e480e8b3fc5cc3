"""What a contact card may hold, how it is cleaned, and the blind indexes taken from it.

Every way in (the pages, the API, imports, automatic contacts) goes through ``card_clean``, so
the limits are the same everywhere and a bad value is refused with a message naming the field.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from postroom.core.keys import keyring, org_scope

ADDRESS_PURPOSE = "contact-address"
NAME_PURPOSE = "contact-name"

MAX_NAME = 200
MAX_TEXT = 200
MAX_NOTES = 10_000
MAX_EMAILS = 20
MAX_PHONES = 20
MAX_PHONE = 40
MAX_FIELDS = 50
MAX_FIELD_KEY = 60
MAX_FIELD_VALUE = 1_000


@dataclass
class Card:
    name: str = ""
    emails: list[str] | None = None
    phones: list[str] | None = None
    company: str = ""
    job_title: str = ""
    notes: str = ""
    fields: list[list[str]] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "emails": list(self.emails or []), "phones": list(self.phones or []), "company": self.company,
            "job_title": self.job_title, "notes": self.notes, "fields": [list(pair) for pair in self.fields or []],
        }  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Card:
        value = value or {}
        return cls(
            name=value.get("name", ""), emails=list(value.get("emails", [])), phones=list(value.get("phones", [])),
            company=value.get("company", ""), job_title=value.get("job_title", ""), notes=value.get("notes", ""),
            fields=[list(pair) for pair in value.get("fields", [])],
        )  # fmt: skip

    @property
    def label(self) -> str:
        return self.name or (self.emails[0] if self.emails else "") or "(no name)"


def _text(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError({field: "Send text."})
    # Control characters would break CSV and vCard lines and headers; tabs and newlines are kept in notes only.
    allowed = "\n\t" if field == "notes" else ""
    text = "".join(character for character in value if character in allowed or unicodedata.category(character)[0] != "C")
    text = text.strip()
    if len(text) > limit:
        raise ValidationError({field: f"At most {limit} characters."})
    return text


def normalise_address(address: str) -> str:
    return address.strip().lower()


def clean_address(value: Any, field: str = "emails") -> str:
    address = normalise_address(_text(value, field, 254))
    try:
        validate_email(address)
    except ValidationError:
        raise ValidationError({field: f"“{address[:80]}” is not an email address."}) from None
    return address


def card_clean(
    *,
    name: Any = "",
    emails: Any = (),
    phones: Any = (),
    company: Any = "",
    job_title: Any = "",
    notes: Any = "",
    fields: Any = (),
) -> Card:
    """A card from untrusted values; ``ValidationError`` names the field that is wrong."""
    if not isinstance(emails, list | tuple) or len(emails) > MAX_EMAILS:
        raise ValidationError({"emails": f"Send a list of at most {MAX_EMAILS} addresses."})
    if not isinstance(phones, list | tuple) or len(phones) > MAX_PHONES:
        raise ValidationError({"phones": f"Send a list of at most {MAX_PHONES} phone numbers."})
    if not isinstance(fields, list | tuple) or len(fields) > MAX_FIELDS:
        raise ValidationError({"fields": f"Send at most {MAX_FIELDS} custom fields."})
    if any(not isinstance(email, str) for email in emails):
        raise ValidationError({"emails": "Each address must be text."})
    clean_emails = list(dict.fromkeys(clean_address(email) for email in emails if email.strip()))
    clean_phones = list(dict.fromkeys(phone for phone in (_text(phone, "phones", MAX_PHONE) for phone in phones) if phone))
    clean_fields = []
    for pair in fields:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValidationError({"fields": "Each custom field is a [name, value] pair."})
        key, value = _text(pair[0], "fields", MAX_FIELD_KEY), _text(pair[1], "fields", MAX_FIELD_VALUE)
        if key or value:
            if not key:
                raise ValidationError({"fields": "A custom field needs a name."})
            clean_fields.append([key, value])
    card = Card(
        name=_text(name, "name", MAX_NAME), emails=clean_emails, phones=clean_phones, company=_text(company, "company", MAX_TEXT),
        job_title=_text(job_title, "job_title", MAX_TEXT), notes=_text(notes, "notes", MAX_NOTES), fields=clean_fields,
    )  # fmt: skip
    if not card.name and not card.emails:
        raise ValidationError({"name": "Give the contact a name or an email address."})
    return card


def card_union(kept: Card, other: Card) -> Card:
    """``kept`` with what only ``other`` has: addresses, phones and fields unioned, empty fields filled."""
    emails = list(dict.fromkeys([*(kept.emails or []), *(other.emails or [])]))[:MAX_EMAILS]
    phones = list(dict.fromkeys([*(kept.phones or []), *(other.phones or [])]))[:MAX_PHONES]
    fields = [list(pair) for pair in kept.fields or []]
    for pair in other.fields or []:
        if list(pair) not in fields:
            fields.append(list(pair))
    notes = kept.notes
    if other.notes and other.notes not in notes:
        notes = f"{notes}\n\n{other.notes}".strip()[:MAX_NOTES]
    return Card(
        name=kept.name or other.name, emails=emails, phones=phones, company=kept.company or other.company,
        job_title=kept.job_title or other.job_title, notes=notes, fields=fields[:MAX_FIELDS],
    )  # fmt: skip


def address_index(organization_id: Any, address: str) -> str:
    return keyring().blind_index(org_scope(organization_id), ADDRESS_PURPOSE, normalise_address(address))


def normalise_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(character for character in decomposed if not unicodedata.combining(character))
    return " ".join(letters.replace(",", " ").replace(".", " ").split())


def name_index(organization_id: Any, name: str) -> str:
    normalised = normalise_name(name)
    return keyring().blind_index(org_scope(organization_id), NAME_PURPOSE, normalised) if normalised else ""
