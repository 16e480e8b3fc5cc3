"""``{% response_picker organization target="#id_text" %}``: the response picker for a composer.

Renders ``responses/_picker.html`` with the responses the signed-in member can use (read through
``responses.selectors``) and the attachments a previous, refused submission of the same form had
already taken from responses (so they are not lost). The contract between the picker and the
composer it sits in is described at the top of ``static/responses/picker.js``.
"""

from __future__ import annotations

import json
from typing import Any

from django import template

from postroom.orgs.models import Membership, Organization
from postroom.responses import actions, selectors

register = template.Library()


@register.inclusion_tag("responses/_picker.html", takes_context=True)
def response_picker(
    context: template.Context,
    organization: Organization,
    target: str = "#id_text",
    subject: str = "#id_subject",
    to: str = "#id_to",
    conversation: Any = None,
) -> dict[str, Any]:
    request = context.get("request")
    if request is None:  # rendered outside a request (e.g. a fragment saved by htmx): no picker
        return {"actor": None, "request": None}
    actor = Membership.objects.select_related("organization", "user").filter(user=request.user, organization=organization).first()
    if actor is None:
        return {"actor": None, "request": request}
    responses = selectors.responses_by_name(actor=actor)
    attached_ids = request.POST.getlist("response_attachment") if request.method == "POST" else []
    return {
        "actor": actor,
        "request": request,
        "organization": organization,
        "choices": [
            {"response": response, "inputs": json.dumps(actions.response_inputs(response)), "team": response.team} for response in responses
        ],
        "attached": selectors.attachments_for_sending(actor=actor, attachment_ids=attached_ids),
        "target": target,
        "subject": subject,
        "to": to,
        "conversation": conversation,
    }
