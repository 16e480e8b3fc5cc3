"""``{% outbox_composer conversation compose %}``: the reply bar (or the composer, when the member
has a draft here or asked for one), and the member's outgoing messages with their status for a
conversation page, read through the outbox selectors."""

from __future__ import annotations

from typing import Any

from django import template

from postroom.conversations.models import Conversation
from postroom.orgs.selectors import membership_of_viewer
from postroom.outbox import selectors
from postroom.outbox.models import OutgoingKind

register = template.Library()


@register.inclusion_tag("outbox/composer.html", takes_context=True)
def outbox_composer(context: template.Context, conversation: Conversation, compose: str = "") -> dict[str, Any]:
    from postroom.outbox.views import composer_context

    request = context["request"]
    actor = membership_of_viewer(user=request.user, organization_id=conversation.organization_id, known=context.get("actor"))
    result: dict[str, Any] = {"conversation": conversation, "actor": actor, "outgoing": [], "csrf_token": context.get("csrf_token")}
    if actor is None:
        return result
    result["outgoing"] = selectors.conversation_outgoing(actor=actor, conversation=conversation)
    draft = selectors.draft_of_conversation(actor=actor, conversation=conversation)
    if draft is not None or compose in (OutgoingKind.REPLY, OutgoingKind.REPLY_ALL, OutgoingKind.FORWARD):
        kind = draft.kind if draft is not None else compose
        result.update(composer_context(request, actor, kind, conversation, draft), show_composer=True)
    return result
