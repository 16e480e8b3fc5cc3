"""The organization's audit log page and its CSV export (owners and admins: VIEW_AUDIT_LOG).

The export is a POST because it writes an audit event of its own, and its cells go through
``postroom.core.csv`` so that a target label such as ``=HYPERLINK(...)`` cannot run as a
formula in the spreadsheet that opens the file (R41).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from postroom.audit.actions import audit_record
from postroom.audit.models import AuditEvent, Result
from postroom.audit.selectors import audit_action_names, audit_events
from postroom.core.csv import csv_rows
from postroom.orgs.models import Membership
from postroom.orgs.policy import Permission
from postroom.orgs.selectors import membership_get

CSV_HEADER = ["time (UTC)", "actor", "action", "result", "target type", "target", "target id", "ip address", "details"]


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, max_length=64)
    person = forms.CharField(required=False, max_length=254, label="Person")
    result = forms.ChoiceField(required=False, choices=[("", "Any result"), *Result.choices])
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")


def _filtered(request: HttpRequest, slug: str, data: QueryDict) -> tuple[Membership, AuditFilterForm, dict[str, Any], QuerySet[AuditEvent]]:
    actor = membership_get(user=request.user, slug=slug, permission=Permission.VIEW_AUDIT_LOG)
    form = AuditFilterForm(data or None)
    filters = {key: value for key, value in form.cleaned_data.items() if value} if form.is_valid() else {}
    return actor, form, filters, audit_events(actor=actor, **filters)


@login_required
@require_GET
def log(request: HttpRequest, slug: str) -> HttpResponse:
    actor, form, _filters, events = _filtered(request, slug, request.GET)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/log.html", {
        "organization": actor.organization, "actor": actor, "form": form, "page": page,
        "actions": audit_action_names(actor=actor), "query": query.urlencode(), "nav": "audit",
    })


def _csv_cells(event: AuditEvent) -> list[object]:
    return [
        event.created_at.strftime("%Y-%m-%d %H:%M:%S"), event.actor_label, event.action, event.result, event.target_type,
        event.target_label, event.target_id, event.ip_address or "", json.dumps(event.details, sort_keys=True, ensure_ascii=False),
    ]


@login_required
@require_POST
def export_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    actor, _form, filters, events = _filtered(request, slug, request.POST)
    audit_record(
        action="audit.exported", actor=actor.user, organization=actor.organization, request=request,
        details={key: str(value) for key, value in filters.items()},
    )
    rows: Iterator[list[object]] = (_csv_cells(event) for event in events.iterator(chunk_size=1000))
    response = StreamingHttpResponse(csv_rows(CSV_HEADER, rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="postroom-audit-{actor.organization.slug}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response
