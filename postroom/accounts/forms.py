"""Forms of the account settings that Postroom adds to allauth's."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from postroom.accounts.models import ApiTokenScope

EXPIRY_CHOICES = [("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year"), ("never", "Never")]


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="What the token is for, e.g. “Nightly export script”.")
    scope = forms.ChoiceField(
        choices=ApiTokenScope.choices,
        initial=ApiTokenScope.READ,
        help_text="Read only: GET requests. Read and write: also changes, with the permissions of your role.",
    )
    expires_in = forms.ChoiceField(label="Expires", choices=EXPIRY_CHOICES, initial="90")

    def expires_at(self) -> datetime | None:
        choice = self.cleaned_data["expires_in"]
        return None if choice == "never" else timezone.now() + timedelta(days=int(choice))
