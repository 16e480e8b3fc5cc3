"""``{% outbox_composer conversation %}``: reply/forward links and the member's outgoing messages
(with their status) for a conversation page, read through the outbox selectors."""

from __future__ import annotations

from typing import Any

from django import template

from postroom.conversations.models import Conversation
from postroom.orgs.models import Membership
from postroom.outbox import selectors

register = template.Library()


@register.inclusion_tag("outbox/composer.html", takes_context=True)
def outbox_composer(context: template.Context, conversation: Conversation) -> dict[str, Any]:
    request = context["request"]
    actor = (
        Membership.objects.select_related("organization").filter(user=request.user, organization_id=conversation.organization_id).first()
    )
    outgoing = selectors.outgoing_messages(actor=actor, conversation=conversation) if actor is not None else []
    return {"conversation": conversation, "actor": actor, "outgoing": outgoing, "csrf_token": context.get("csrf_token")}
