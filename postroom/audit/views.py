from __future__ import annotations

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


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, max_length=64)
    person = forms.CharField(required=False, max_length=254, label="Person")
    result = forms.ChoiceField(required=False, choices=[("", "Any result"), *Result.choices])
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")


def _filtered(request: HttpRequest, slug: str, data: QueryDict) -> tuple[Membership, AuditFilterForm, QuerySet[AuditEvent]]:
    actor = membership_get(user=request.user, slug=slug, permission=Permission.VIEW_AUDIT_LOG)
    form = AuditFilterForm(data or None)
    filters = form.cleaned_data if form.is_valid() else {}
    events = audit_events(actor=actor, **{key: value for key, value in filters.items() if value})
    return actor, form, events


@login_required
@require_GET
def log(request: HttpRequest, slug: str) -> HttpResponse:
    actor, form, events = _filtered(request, slug, request.GET)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/log.html", {
        "organization": actor.organization, "actor": actor, "form": form, "page": page,
        "actions": audit_action_names(actor=actor), "query": query.urlencode(), "nav": "audit",
    })


@login_required
@require_POST  # it writes an audit event, so it is not a GET
def export_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    actor, _form, events = _filtered(request, slug, request.POST)
    audit_record(action="audit.exported", actor=request.user, organization=actor.organization, request=request)
    header = ["time (UTC)", "actor", "action", "result", "target type", "target", "target id", "ip address", "details"]
    rows = (
        [e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.actor_label, e.action, e.result, e.target_type, e.target_label, e.target_id, e.ip_address or "", e.details]
        for e in events.iterator(chunk_size=1000)
    )
    response = StreamingHttpResponse(csv_rows(header, rows), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="postroom-audit-{actor.organization.slug}-{stamp}.csv"'
    return response
