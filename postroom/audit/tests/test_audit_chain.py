"""SECURITY.md R55: the audit log is append-only and its hash chain detects edits."""

from __future__ import annotations

import pytest
from django.db import connection

from postroom.audit.actions import audit_record, audit_verify_chain
from postroom.audit.models import AppendOnlyError, AuditEvent


@pytest.mark.django_db
def test_r55_application_cannot_change_or_delete_events() -> None:
    event = audit_record(action="test.event")
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="other")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.django_db
def test_r55_chain_reports_an_edit_made_behind_the_applications_back() -> None:
    for number in range(5):
        audit_record(action=f"test.{number}")
    assert audit_verify_chain().intact
    target = AuditEvent.objects.order_by("id")[2]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
        cursor.execute("UPDATE audit_auditevent SET action = 'forged' WHERE id = %s", [target.pk])
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    report = audit_verify_chain()
    assert not report.intact
    assert report.broken_at == target.pk


@pytest.mark.django_db
def test_r55_chain_reports_a_removed_row() -> None:
    for number in range(3):
        audit_record(action=f"test.{number}")
    newest = AuditEvent.objects.order_by("-id").first()
    assert newest is not None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [newest.pk])
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    assert audit_verify_chain().reason == "the newest rows were removed"


@pytest.mark.django_db
def test_r55_postgres_refuses_updates_at_the_database() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL only")
    from django.db import DatabaseError, transaction

    event = audit_record(action="test.event")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [event.pk])
