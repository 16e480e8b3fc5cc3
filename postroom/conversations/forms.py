"""Forms of the inbox pages: explicit fields only (R23); ids are checked by the selectors."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any

from django import forms
from django.utils import timezone as django_timezone

from postroom.conversations.actions import LABEL_COLORS

SNOOZE_PRESETS = {
    "later_today": "Later today",
    "tomorrow": "Tomorrow",
    "next_week": "Next week",
}
MORNING = time(9, 0)
LATER_TODAY_HOURS = 3
# Offsets browsers report (minutes west of UTC, as Date.getTimezoneOffset() gives them).
MAX_OFFSET_MINUTES = 14 * 60


def snooze_preset_time(preset: str, *, now: datetime, offset_minutes: int) -> datetime:
    """When a preset ends, in the member's local time (``offset_minutes`` from their browser):
    later today is three hours from now (at the full hour); tomorrow and next week are at 9:00
    on the next day and on next Monday."""
    local_zone = timezone(-timedelta(minutes=offset_minutes))
    local_now = now.astimezone(local_zone)
    if preset == "later_today":
        return (local_now + timedelta(hours=LATER_TODAY_HOURS)).replace(minute=0, second=0, microsecond=0)
    if preset == "tomorrow":
        day = local_now.date() + timedelta(days=1)
    elif preset == "next_week":
        day = local_now.date() + timedelta(days=7 - local_now.weekday())
    else:
        raise forms.ValidationError("Choose when the conversation comes back.")
    return datetime.combine(day, MORNING, tzinfo=local_zone)


class SnoozeForm(forms.Form):
    preset = forms.ChoiceField(choices=[("", "Custom"), *SNOOZE_PRESETS.items()], required=False)
    until = forms.DateTimeField(
        required=False, label="Until", input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )  # fmt: skip
    offset = forms.IntegerField(required=False, min_value=-MAX_OFFSET_MINUTES, max_value=MAX_OFFSET_MINUTES, widget=forms.HiddenInput)

    def until_time(self) -> datetime:
        """The chosen end of the snooze, aware, in UTC terms (call after ``is_valid``)."""
        data = self.cleaned_data
        offset = data.get("offset") or 0
        now = django_timezone.now()
        if data.get("preset"):
            return snooze_preset_time(data["preset"], now=now, offset_minutes=offset)
        until = data.get("until")
        if until is None:
            raise forms.ValidationError("Choose a preset or a date and time.")
        # datetime-local carries no zone: it is the member's local time.
        return until.replace(tzinfo=timezone(-timedelta(minutes=offset)))


# How each colour of ``LABEL_COLORS`` is named to people using a screen reader.
LABEL_COLOR_NAMES = ("Grey", "Red", "Orange", "Yellow", "Green", "Cyan", "Blue", "Violet", "Pink")


class LabelForm(forms.Form):
    name = forms.CharField(max_length=60)
    color = forms.ChoiceField(choices=[(color, color) for color in LABEL_COLORS], initial=LABEL_COLORS[0])
    personal = forms.BooleanField(required=False, initial=True, label="Only for me")


class ShareForm(forms.Form):
    """Exactly one of: a team, a member, or the organization."""

    team = forms.IntegerField(required=False, widget=forms.HiddenInput)
    member = forms.IntegerField(required=False, widget=forms.HiddenInput)
    organization = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen = sum((data.get("team") is not None, data.get("member") is not None, bool(data.get("organization"))))
        if chosen != 1:
            raise forms.ValidationError("Choose one team, one member or the whole organization.")
        return data
