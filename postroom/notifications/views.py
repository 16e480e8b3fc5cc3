"""The notifications page, opening a notification, marking read, and the digest setting.

Reading never changes anything (GET); opening a notification is a POST that marks it read and
then goes to the conversation, so a link preview or a prefetch cannot mark anything read.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from postroom.notifications import actions, selectors
from postroom.notifications.display import shown_notifications
from postroom.notifications.models import DigestFrequency
from postroom.orgs.selectors import membership_get

PAGE_SIZE = 50


@login_required
@require_GET
def notification_list(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    unread_only = request.GET.get("show") == "unread"
    notifications = selectors.notification_page(actor=actor, unread_only=unread_only, limit=PAGE_SIZE)
    return render(request, "notifications/list.html", {
        "organization": actor.organization, "nav": "notifications", "unread_only": unread_only,
        "notifications": shown_notifications(notifications), "unread": selectors.unread_count(actor=actor),
        "preference": selectors.preference_of(actor=actor), "digest_choices": DigestFrequency.choices,
    })  # fmt: skip


def _back(request: HttpRequest, slug: str) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(reverse("notifications:list", args=[slug]))


@login_required
@require_POST
def notification_open(request: HttpRequest, slug: str, notification_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    notification = selectors.notification_get(actor=actor, notification_id=notification_id)
    actions.notification_mark_read(actor=actor, notification=notification, read=True)
    url = reverse("conversations:detail", args=[slug, notification.conversation_id])
    anchor = f"#comment-{notification.comment_id}" if notification.comment_id else ""
    return HttpResponseRedirect(url + anchor)


@login_required
@require_POST
def notification_read(request: HttpRequest, slug: str, notification_id: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    notification = selectors.notification_get(actor=actor, notification_id=notification_id)
    actions.notification_mark_read(actor=actor, notification=notification, read=request.POST.get("read", "1") != "0")
    return _back(request, slug)


@login_required
@require_POST
def notification_read_all(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    marked = actions.notifications_mark_all_read(actor=actor)
    messages.success(request, f"Marked {marked} notification{'s' if marked != 1 else ''} as read.")
    return _back(request, slug)


@login_required
@require_POST
def notification_settings(request: HttpRequest, slug: str) -> HttpResponse:
    actor = membership_get(user=request.user, slug=slug)
    try:
        preference = actions.preference_set(actor=actor, digest=request.POST.get("digest", ""))
    except ValidationError as error:
        messages.error(request, " ".join(message for field in error.message_dict.values() for message in field))
    else:
        messages.success(request, f"Email digest: {preference.get_digest_display().lower()}.")
    return HttpResponseRedirect(reverse("notifications:list", args=[slug]))
