"""The composer form: explicit fields only; addresses parsed strictly (R33)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from postroom.mailboxes.models import Mailbox
from postroom.mime.addresses import split_address_field

MAX_RECIPIENTS_PER_FIELD = 100


class AddressListField(forms.CharField):
    """Comma-separated addresses (``Name <a@b>`` or ``a@b``) as (display name, address) pairs."""

    def to_python(self, value: Any) -> list[tuple[str, str]]:  # type: ignore[override]
        text = super().to_python(value)
        pairs = split_address_field(text) if text else []
        if pairs is None:
            raise forms.ValidationError("These addresses cannot be read unambiguously; separate them with commas.")
        if len(pairs) > MAX_RECIPIENTS_PER_FIELD:
            raise forms.ValidationError(f"At most {MAX_RECIPIENTS_PER_FIELD} addresses.")
        return pairs


class ComposeForm(forms.Form):
    mailbox = forms.ModelChoiceField(queryset=Mailbox.objects.none(), empty_label=None, label="From")
    to = AddressListField(required=False, max_length=10_000)
    cc = AddressListField(required=False, max_length=10_000, label="Cc")
    bcc = AddressListField(required=False, max_length=10_000, label="Bcc")
    subject = forms.CharField(required=False, max_length=998, strip=False)
    text = forms.CharField(required=False, max_length=1_000_000, strip=False, widget=forms.Textarea(attrs={"rows": 12}), label="Message")

    def __init__(self, *args: Any, mailboxes: QuerySet[Mailbox], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mailbox"].queryset = mailboxes  # type: ignore[attr-defined]
