"""Page forms of the contacts app: explicit fields only (R23); the card itself is checked by
``cards.card_clean``, the same for pages, API and imports."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from postroom.contacts.cards import Card, card_clean
from postroom.contacts.models import BookKind

MAX_UPLOAD_NOTE = "CSV with a header row (name, email, phone… columns), or vCard (.vcf)."


class BookForm(forms.Form):
    name = forms.CharField(max_length=80, label="Book name")
    kind = forms.ChoiceField(choices=BookKind.choices, initial=BookKind.PERSONAL, label="Belongs to")
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Team (for a team book)")

    def __init__(self, *args: Any, teams: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "—"), *teams]  # type: ignore[attr-defined]


class RenameForm(forms.Form):
    name = forms.CharField(max_length=80, label="Book name")


class ShareForm(forms.Form):
    team = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Share with")
    can_write = forms.BooleanField(required=False, label="They may change contacts (read-write)")

    def __init__(self, *args: Any, teams: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "The whole organization"), *teams]  # type: ignore[attr-defined]


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


class ContactForm(forms.Form):
    name = forms.CharField(max_length=200, required=False)
    emails = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, label="Email addresses", help_text="One per line.")
    phones = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Phone numbers", help_text="One per line.")
    company = forms.CharField(max_length=200, required=False)
    job_title = forms.CharField(max_length=200, required=False, label="Job title")
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, max_length=10_000)
    fields_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, label="Custom fields", help_text="One per line, as “name: value”."
    )

    @classmethod
    def initial_from(cls, card: Card) -> dict[str, str]:
        return {
            "name": card.name, "emails": "\n".join(card.emails or []), "phones": "\n".join(card.phones or []), "company": card.company,
            "job_title": card.job_title, "notes": card.notes, "fields_text": "\n".join(f"{key}: {value}" for key, value in card.fields or []),
        }  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        fields = []
        for line in _lines(data.get("fields_text", "")):
            key, separator, value = line.partition(":")
            if not separator:
                self.add_error("fields_text", f"“{line[:40]}” needs a colon between the name and the value.")
                return data
            fields.append([key.strip(), value.strip()])
        try:
            data["card"] = card_clean(
                name=data.get("name", ""), emails=_lines(data.get("emails", "")), phones=_lines(data.get("phones", "")),
                company=data.get("company", ""), job_title=data.get("job_title", ""), notes=data.get("notes", ""), fields=fields,
            )  # fmt: skip
        except ValidationError as error:
            for key, messages in error.message_dict.items():
                self.add_error("fields_text" if key == "fields" else key, messages)
        return data


class ImportForm(forms.Form):
    file = forms.FileField(label="File", help_text=MAX_UPLOAD_NOTE)


class MergeForm(forms.Form):
    other = forms.UUIDField(widget=forms.HiddenInput)
