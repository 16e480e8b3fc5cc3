"""``{% live_stream as live %}``: where a page of an organization opens its live updates.

Gives ``live.url`` (``/o/<slug>/events/``) and, on the database bus, ``live.after``: the position
of the event log when the page was rendered (one indexed read), so that the stream the page
opens a moment later replays whatever happened in between instead of missing it. On Redis
pub/sub nothing is kept to replay, and ``after`` is empty. Outside an organization: None.
"""

from __future__ import annotations

from django import template
from django.urls import reverse

from postroom.live.bus import DatabaseBus, get_bus, last_event_id
from postroom.live.events import cursor_encode
from postroom.orgs.models import Organization

register = template.Library()


@register.simple_tag(takes_context=True)
def live_stream(context: template.Context) -> dict[str, str] | None:
    organization = context.get("organization")
    user = context.get("user")
    if not isinstance(organization, Organization) or user is None or not user.is_authenticated:
        return None
    after = ""
    if isinstance(get_bus(), DatabaseBus):
        after = cursor_encode(last_event_id(), user_id=user.pk, organization_id=organization.pk)
    return {"url": reverse("live:events", args=[organization.slug]), "after": after}
