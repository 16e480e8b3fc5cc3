"""``{% notification_bell %}``: the bell in the application shell, with the unread count across
the signed-in person's organizations and the newest unread notifications (two queries)."""

from __future__ import annotations

from typing import Any

from django import template

from postroom.notifications import selectors
from postroom.notifications.display import bell_items

register = template.Library()

BELL_ITEMS = 8


@register.inclusion_tag("notifications/_bell.html", takes_context=True)
def notification_bell(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"hidden": True}
    organization = context.get("organization")
    memberships = list(context["shell"]["memberships"]) if "shell" in context else []
    slug = getattr(organization, "slug", None) or (memberships[0].organization.slug if memberships else None)
    count, latest = selectors.unread_for_user(user=user, limit=BELL_ITEMS)
    return {
        "request": request, "csrf_token": context.get("csrf_token"), "count": count, "items": bell_items(latest),
        "slug": slug, "several_organizations": len(memberships) > 1,
    }  # fmt: skip
