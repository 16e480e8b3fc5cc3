"""Small presentation helpers for Postroom's templates (no data access here)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from postroom.web.icons import ICONS
from postroom.web.links import link

register = template.Library()

AVATAR_TONES = 6


@register.simple_tag
def icon(name: Any, css_class: Any = "") -> SafeString:
    """``{% icon "mail" "icon-sm" %}``: an icon as inline SVG (``web/icon.html`` calls it, so
    ``{% include "web/icon.html" with name=... class=... %}`` works as before). Unknown names draw
    an empty icon."""
    return _icon_svg(str(name or ""), str(css_class or ""))


@lru_cache(maxsize=512)
def _icon_svg(name: str, css_class: str) -> SafeString:
    classes = f"icon {conditional_escape(css_class)}" if css_class else "icon"
    return mark_safe(  # noqa: S308 - constant paths of ours, the class escaped  # nosec B308 B703
        f'<svg class="{classes}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">{ICONS.get(name, "")}</svg>'
    )


@register.simple_tag
def href(name: str, *args: Any) -> str:
    """``{% href 'conversations:list' slug %}``: ``{% url %}`` for the shell's links, remembered
    (``postroom.web.links``)."""
    return link(name, *args)


@register.filter
def initials(name: Any) -> str:
    """Up to two letters for an avatar: "Alice Owner" → "AO", "alice" → "A"."""
    words = [word for word in re.split(r"[\s._@-]+", str(name or "")) if word]
    return "".join(word[0] for word in words[:2]).upper() or "?"


@register.filter
def avatar_tone(value: Any) -> int:
    """A stable colour for a person or organization, so the same face keeps the same colour."""
    text = str(value or "")
    return sum(text.encode()) % AVATAR_TONES


@register.filter
def tenths(part: Any, whole: Any) -> int:
    """``part`` of ``whole`` rounded to tens of percent, for the width classes of a meter."""
    try:
        part_number, whole_number = int(part), int(whole)
    except (TypeError, ValueError):
        return 0
    if whole_number <= 0:
        return 0
    return min(100, max(0, round(part_number * 10 / whole_number) * 10))


BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Chromium/", "Chromium"), ("Safari/", "Safari"))
SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Windows", "Windows"), ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


@register.filter
def device_summary(user_agent: Any) -> str:
    """"Chrome on Linux" from a User-Agent header; the raw header is shown as a tooltip."""
    text = str(user_agent or "")
    if not text:
        return "Unknown device"
    if "HeadlessChrome/" in text:
        browser = "Chrome (headless)"
    else:
        browser = next((label for marker, label in BROWSERS if marker in text), "")
    system = next((label for marker, label in SYSTEMS if marker in text), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or text[:60]


@register.filter
def is_mobile_agent(user_agent: Any) -> bool:
    return any(marker in str(user_agent or "") for marker in ("iPhone", "Android", "Mobile"))


@register.filter
def button_classes(attrs: Any) -> str:
    """CSS classes for a django-allauth ``{% element button %}`` from the tags its templates pass."""
    tags = set(attrs.get("tags") or [])
    if "link" in tags:
        return "btn-link"
    classes = ["btn"]
    if tags & {"danger", "delete"}:
        classes.append("btn-danger")
    elif "outline" not in tags and (
        tags & {"primary", "prominent"}
        or (attrs.get("type") == "submit" and not tags & {"secondary", "cancel", "minor", "tool"})
    ):
        classes.append("btn-primary")
    if tags & {"minor", "tool"}:
        classes.append("btn-sm")
    return " ".join(classes)


BADGE_TONES = {"success": "badge-ok", "verified": "badge-ok", "warning": "badge-warn", "unverified": "badge-warn", "danger": "badge-danger", "current": "badge-accent", "primary": "badge-accent"}


@register.filter
def badge_classes(attrs: Any) -> str:
    tags = list(attrs.get("tags") or [])
    tone = next((BADGE_TONES[tag] for tag in tags if tag in BADGE_TONES), "")
    return f"badge {tone}".strip()


@register.filter
def groups_of_four(text: Any) -> str:
    """A long key in groups of four characters, easier to type into an app by hand."""
    value = str(text or "")
    return " ".join(value[index : index + 4] for index in range(0, len(value), 4))


# How the home page's activity feed reads an audit action ({target} is the event's target label).
ACTIVITY_PHRASES = {
    "org.created": "created the organization",
    "org.settings_changed": "changed the organization settings",
    "setup.completed": "set up Postroom",
    "invitation.created": "invited {target}",
    "invitation.revoked": "revoked the invitation for {target}",
    "invitation.accepted": "accepted an invitation",
    "invitation.accept_refused": "opened an invitation meant for someone else",
    "member.added": "joined",
    "member.left": "left",
    "member.removed": "removed {target}",
    "member.role_changed": "changed the role of {target}",
    "team.created": "created the team {target}",
    "team.renamed": "renamed a team to {target}",
    "team.deleted": "deleted the team {target}",
    "team.member_added": "added {target} to a team",
    "team.member_removed": "removed {target} from a team",
    "team.member_observer_set": "changed how {target} takes part in a team",
    "audit.exported": "exported the audit log",
}


@register.filter
def activity(event: Any) -> dict[str, str]:
    """One line of the activity feed, in parts the template escapes: who, what, to whom."""
    phrase = ACTIVITY_PHRASES.get(event.action)
    if phrase is None:
        return {"actor": event.actor_label or "Postroom", "code": event.action, "target": event.target_label, "before": "", "after": ""}
    before, marker, after = phrase.partition("{target}")
    return {"actor": event.actor_label or "Postroom", "code": "", "before": before, "target": event.target_label if marker else "", "after": after}


@register.filter
def json_text(value: Any) -> str:
    """Data for django-allauth's WebAuthn script, which reads an element's text as JSON.

    Given as the text of a hidden element (escaped like any text; the browser unescapes it), not
    as a script tag: no script to allow, nothing marked safe.
    """
    return json.dumps(value, cls=DjangoJSONEncoder)
