"""Forms of the organization pages: plain forms with explicit fields, never ModelForms over all fields (R23)."""

from __future__ import annotations

from typing import Any

from django import forms

from postroom.orgs.policy import Role, can_grant

ROLE_CHOICES = [(Role.MEMBER.value, "Member"), (Role.ADMIN.value, "Admin"), (Role.OWNER.value, "Owner")]


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER.value)

    def __init__(self, *args: Any, granter_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Offer only what the inviter may grant; the action refuses anything else anyway.
        self.fields["role"].choices = [choice for choice in ROLE_CHOICES if can_grant(granter_role, choice[0])]  # type: ignore[attr-defined]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class TeamForm(forms.Form):
    name = forms.CharField(max_length=80, label="Team name")


class TeamMemberForm(forms.Form):
    membership = forms.IntegerField(widget=forms.HiddenInput)
    # Observers see the team's conversations but are not notified of them.
    observer = forms.BooleanField(required=False, label="Observer")


class OrganizationSettingsForm(forms.Form):
    name = forms.CharField(max_length=120, label="Organization name")
    require_two_factor = forms.BooleanField(
        required=False, label="Require two-factor authentication",
        help_text="Members without a second factor are sent to set one up before they can do anything else.",
    )
