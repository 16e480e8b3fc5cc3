"""The response form: explicit fields only (R23); scope and team are checked by the actions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from postroom.orgs.models import Team
from postroom.responses.actions import MAX_BODY, MAX_NAME, MAX_SUBJECT
from postroom.responses.models import Scope


class ResponseForm(forms.Form):
    name = forms.CharField(max_length=MAX_NAME, help_text="Shown in the picker; only members who can see the response see it.")
    scope = forms.ChoiceField(choices=Scope.choices, label="Who can use it", initial=Scope.PERSONAL)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, help_text="For a team response.")
    subject = forms.CharField(
        max_length=MAX_SUBJECT, required=False, strip=False, help_text="Optional: replaces the subject when inserted into an empty one."
    )
    body = forms.CharField(
        max_length=MAX_BODY, required=False, strip=False, widget=forms.Textarea(attrs={"rows": 12, "data-rich-editor": ""})
    )

    def __init__(self, *args: Any, teams: QuerySet[Team], scopes: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]
        # Any scope is accepted here and checked by the action (403 for one the role does not
        # allow, like the API); only the allowed ones are offered.
        self.fields["scope"].widget.choices = scopes
