from django import forms

from postroom.orgs.policy import Role

ROLE_CHOICES = [(Role.MEMBER.value, "Member"), (Role.ADMIN.value, "Admin"), (Role.OWNER.value, "Owner")]


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.MEMBER.value)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class TeamForm(forms.Form):
    name = forms.CharField(max_length=80, label="Team name")


class TeamMemberForm(forms.Form):
    membership = forms.IntegerField(widget=forms.HiddenInput)


class OrganizationSettingsForm(forms.Form):
    name = forms.CharField(max_length=120, label="Organization name")
    require_two_factor = forms.BooleanField(
        required=False, label="Require two-factor authentication",
        help_text="Members without a second factor are sent to set one up before they can do anything else.",
    )
