"""What the inbox pages say, made without the database: senders of list rows, timeline phrases,
the order of a thread, snooze presets in the member's time zone, subjects shown or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django import forms

from postroom.conversations.display import event_line, row_sender, thread_entries
from postroom.conversations.forms import snooze_preset_time
from postroom.conversations.models import Direction
from postroom.conversations.templatetags.inbox import subject_differs

T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # a Wednesday


def message(at: datetime, direction: str = Direction.INBOUND, **addresses: Any) -> Any:
    return SimpleNamespace(sent_at=at, created_at=at, direction=direction, addresses=addresses, html_body=None, text_body="Hi\n")


def event(kind: str, at: datetime, actor: Any = None, **details: Any) -> Any:
    """A stand-in for a ``TimelineEvent`` with its actor (a membership-like object) loaded."""
    return SimpleNamespace(kind=kind, details=details, created_at=at, actor=actor, actor_id=actor.pk if actor else None, pk=kind)


NO_NAMES: dict[str, dict[Any, Any]] = {"members": {}, "teams": {}, "labels": {}}


def test_a_row_names_the_sender_or_the_recipients_of_our_own_message() -> None:
    assert row_sender(Direction.INBOUND, {"from": [["Dana Customer", "dana@customer.example"]]}) == "Dana Customer"
    assert row_sender(Direction.INBOUND, {"from": [["", "dana@customer.example"]]}) == "dana@customer.example"
    ours = {"to": [["Dana", "d@x.example"], ["", "e@x.example"], ["Finn", "f@x.example"]]}
    assert row_sender(Direction.OUTBOUND, ours) == "Dana, e@x.example …"
    assert row_sender(Direction.OUTBOUND, {}) == "(no recipient)"
    assert row_sender(Direction.INBOUND, None) == "(unknown sender)"
    assert row_sender(None, None) == ""


def test_events_after_the_last_message_are_the_tail_and_the_rest_interleave_by_time() -> None:
    first, second = message(T0), message(T0 + timedelta(hours=2))
    between = event("closed", T0 + timedelta(hours=1))
    after = event("reopened", T0 + timedelta(hours=3), by="new_message")
    entries = thread_entries([second, first], [after, between], NO_NAMES)  # type: ignore[list-item]
    order = [entry.message.message if entry.message else entry.event.event for entry in entries]  # type: ignore[union-attr]
    assert order == [first, between, second, after]
    assert [entry.tail for entry in entries] == [False, False, False, True]


def test_timeline_phrases_name_people_teams_and_labels_and_survive_deleted_ones() -> None:
    alice = SimpleNamespace(pk=1, user=SimpleNamespace(display_name="Alice"))
    bob = SimpleNamespace(pk=2, user=SimpleNamespace(display_name="Bob"))
    names = {"members": {2: bob}, "teams": {5: SimpleNamespace(name="Support")}, "labels": {"l1": SimpleNamespace(name="Urgent")}}

    def said(item: Any) -> str:
        line = event_line(item, names)
        return " ".join(part for part in (line.actor, line.text, line.target) if part)

    assigned = event("assigned", T0, alice, membership_id=2)
    assert said(assigned) == "Alice assigned Bob"
    self_assigned = event("assigned", T0, bob, membership_id=2)
    assert said(self_assigned) == "Bob assigned themselves"
    assert said(event("shared", T0, alice, team_id=5)) == "Alice shared this with team Support"
    assert said(event("shared", T0, alice, team_id=6)) == "Alice shared this with a deleted team"
    assert said(event("shared", T0, alice, organization=True)) == "Alice shared this with the whole organization"
    assert said(event("unshared", T0, alice, membership_id=9)) == "Alice stopped sharing this with a former member"
    assert said(event("labelled", T0, alice, label_id="l1")) == "Alice added the label Urgent"
    assert said(event("unlabelled", T0, alice, label_id="gone")) == "Alice removed the label (deleted label)"
    assert said(event("reopened", T0, None, by="new_message")) == "A new message reopened this conversation"
    assert said(event("trash", T0, alice)) == "Alice moved this to the trash"
    snoozed = event_line(event("snoozed", T0, alice, until="2026-03-05T09:00:00+00:00"), names)
    assert (snoozed.text, snoozed.until) == ("snoozed this until", datetime(2026, 3, 5, 9, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("preset", "offset", "expected"),
    [
        ("tomorrow", 0, datetime(2026, 3, 5, 9, 0, tzinfo=UTC)),
        ("tomorrow", -120, datetime(2026, 3, 5, 7, 0, tzinfo=UTC)),  # UTC+2: 9:00 there
        ("tomorrow", 300, datetime(2026, 3, 5, 14, 0, tzinfo=UTC)),  # UTC-5 (it is 5:00 there)
        ("next_week", 0, datetime(2026, 3, 9, 9, 0, tzinfo=UTC)),  # the next Monday
        ("later_today", 0, datetime(2026, 3, 4, 13, 0, tzinfo=UTC)),
    ],
)
def test_snooze_presets_are_in_the_members_own_time(preset: str, offset: int, expected: datetime) -> None:
    assert snooze_preset_time(preset, now=T0 + timedelta(minutes=20), offset_minutes=offset) == expected


def test_an_unknown_snooze_preset_is_refused() -> None:
    with pytest.raises(forms.ValidationError):
        snooze_preset_time("someday", now=T0, offset_minutes=0)


def test_a_message_subject_is_shown_only_when_it_says_more_than_re() -> None:
    assert not subject_differs("Re: RE: Order 12", "Order 12")
    assert not subject_differs("Fwd: order 12", "Order 12")
    assert subject_differs("Order 12 — update", "Order 12")


def test_short_time_is_what_date_format_gives() -> None:
    """The list's time column written without ``date_format`` says what ``date_format`` said:
    the time today, the day this year, the date before, for every month and edge of a day."""
    from django.utils import timezone, translation
    from django.utils.dateformat import format as date_format

    from postroom.conversations.templatetags.inbox import short_time

    now = timezone.now()
    moments = [now, now.replace(hour=0, minute=0, second=0, microsecond=0), now.replace(hour=23, minute=59)]
    for year in (now.year, now.year - 1, 2001, 999):
        for month in range(1, 13):
            for day in (1, 9, 28):
                moments.append(now.replace(year=year, month=month, day=day, hour=7, minute=5))
    for language in ("en", "de"):
        with translation.override(language):
            for moment in moments:
                if moment.date() == now.date():
                    expected = date_format(moment, "H:i")
                elif moment.year == now.year:
                    expected = date_format(moment, "M j")
                else:
                    expected = date_format(moment, "M j, Y")
                assert short_time(moment) == expected, moment
    assert short_time(None) == ""
