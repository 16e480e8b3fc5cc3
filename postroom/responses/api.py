"""API for responses (canned replies): list, read, create, change, delete, render.

Same rules as the pages (``responses.selectors`` and ``responses.actions``): a member sees the
organization's responses, their teams' and their own personal ones; anything else is 404, and a
write the role does not allow is 403. Request bodies are explicit allowlists (``Input``, R23):
the organization, owner and author come from the caller, never from the body. Attachments are
listed here and travel with a render; adding files is done on the response's page (a multipart
upload) for now.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
from postroom.api.schemas import Input
from postroom.orgs.models import Membership, Team
from postroom.orgs.selectors import membership_get
from postroom.responses import actions, selectors, variables
from postroom.responses.models import Response, ResponseAttachment, Scope

router = Router(tags=["responses"])


class ResponseAttachmentOut(Schema):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int


class ResponseOut(Schema):
    id: uuid.UUID
    name: str
    scope: Scope
    team_id: int | None = Field(description="The team of a team response; null otherwise.")
    subject: str
    body: str = Field(description="Sanitised HTML, with its variables (`{{ name }}`) unfilled.")
    inputs: list[str] = Field(description="Labels of the custom inputs (`{{ input:Label }}`) asked for when it is inserted.")
    can_manage: bool = Field(description="Whether the caller may change or delete it.")
    attachments: list[ResponseAttachmentOut]
    created_at: datetime
    updated_at: datetime


class ResponsePage(Page[ResponseOut]):
    """One page of responses, newest first."""


class ResponseIn(Input):
    name: str = Field(max_length=actions.MAX_NAME)
    scope: Scope = Field(Scope.PERSONAL, description="personal (yours), team (needs team_id) or organization (owners and admins).")
    team_id: int | None = Field(None, description="The team, for a team response.")
    subject: str = Field("", max_length=actions.MAX_SUBJECT)
    body: str = Field("", max_length=actions.MAX_BODY, description="HTML; sanitised before it is stored.")


class ResponsePatch(Input):
    name: str | None = Field(None, max_length=actions.MAX_NAME)
    scope: Scope | None = None
    team_id: int | None = None
    subject: str | None = Field(None, max_length=actions.MAX_SUBJECT)
    body: str | None = Field(None, max_length=actions.MAX_BODY)


class RenderIn(Input):
    to: str = Field("", max_length=10_000, description="The composer's To field; its first address fills the recipient variables.")
    conversation_id: uuid.UUID | None = Field(None, description="Without `to`: the recipient of a reply in this conversation.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Custom input label → value.")


class RenderedOut(Schema):
    subject: str
    html: str
    text: str
    attachments: list[ResponseAttachmentOut]
    missing_inputs: list[str] = Field(description="Custom inputs left without a value (still shown as `{{ input:… }}`).")


def _attachment_out(attachment: ResponseAttachment) -> ResponseAttachmentOut:
    return ResponseAttachmentOut(
        id=attachment.pk, filename=attachment.filename or "", content_type=attachment.content_type, size=attachment.size
    )


def _response_out(response: Response, *, actor: Membership) -> ResponseOut:
    return ResponseOut(
        id=response.pk,
        name=response.name or "",
        scope=Scope(response.scope),
        team_id=response.team_id,
        subject=response.subject or "",
        body=response.body or "",
        inputs=actions.response_inputs(response),
        can_manage=actions.can_manage(actor, response),
        attachments=[_attachment_out(attachment) for attachment in response.attachments.all()],
        created_at=response.created_at,
        updated_at=response.updated_at,
    )


def _team(actor: Membership, team_id: int | None) -> Team | None:
    if team_id is None:
        return None
    team = Team.objects.filter(pk=team_id, organization_id=actor.organization_id).first()
    if team is None:
        raise ValidationError({"team_id": ["Choose one of your organization's teams."]})
    return team


@router.get("/orgs/{slug}/responses", response={200: ResponsePage, **ERRORS}, summary="List the responses you can use")
def response_list(request: HttpRequest, slug: str, page: Query[PageParams], scope: Query[Scope | None] = None) -> ResponsePage:
    actor = membership_get(user=request.user, slug=slug)
    responses = selectors.responses_visible_to(actor=actor, scope=scope).prefetch_related("attachments")
    paged = paginate(responses, order=("-created_at", "id"), params=page, key="responses")
    return ResponsePage(items=[_response_out(response, actor=actor) for response in paged.items], next=paged.next)


@router.post("/orgs/{slug}/responses", response={201: ResponseOut, **ERRORS}, summary="Create a response")
def response_create(request: HttpRequest, slug: str, payload: ResponseIn) -> Status[ResponseOut]:
    actor = membership_get(user=request.user, slug=slug)
    content = actions.ResponseContent(name=payload.name, subject=payload.subject, body=payload.body)
    response = actions.response_create(
        actor=actor, scope=payload.scope, team=_team(actor, payload.team_id), content=content, request=request
    )
    return Status(201, _response_out(response, actor=actor))


@router.get("/orgs/{slug}/responses/{uuid:response_id}", response={200: ResponseOut, **ERRORS}, summary="One response")
def response_detail(request: HttpRequest, slug: str, response_id: uuid.UUID) -> ResponseOut:
    actor = membership_get(user=request.user, slug=slug)
    return _response_out(selectors.response_get(actor=actor, response_id=response_id), actor=actor)


@router.patch("/orgs/{slug}/responses/{uuid:response_id}", response={200: ResponseOut, **ERRORS}, summary="Change a response")
def response_update(request: HttpRequest, slug: str, response_id: uuid.UUID, payload: ResponsePatch) -> ResponseOut:
    actor = membership_get(user=request.user, slug=slug)
    response = selectors.response_get(actor=actor, response_id=response_id)
    content = actions.ResponseContent(
        name=payload.name if payload.name is not None else response.name or "",
        subject=payload.subject if payload.subject is not None else response.subject or "",
        body=payload.body if payload.body is not None else response.body or "",
    )
    team = _team(actor, payload.team_id) if payload.team_id is not None else response.team
    actions.response_update(actor=actor, response=response, content=content, scope=payload.scope, team=team, request=request)
    return _response_out(selectors.response_get(actor=actor, response_id=response_id), actor=actor)


@router.delete("/orgs/{slug}/responses/{uuid:response_id}", response={204: None, **ERRORS}, summary="Delete a response")
def response_delete(request: HttpRequest, slug: str, response_id: uuid.UUID) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    response = selectors.response_get(actor=actor, response_id=response_id)
    actions.response_delete(actor=actor, response=response, request=request)
    return Status(204, None)


@router.post(
    "/orgs/{slug}/responses/{uuid:response_id}/render",
    response={200: RenderedOut, **ERRORS},
    summary="Fill a response in for a message (what the composer inserts)",
)
def response_render(request: HttpRequest, slug: str, response_id: uuid.UUID, payload: RenderIn) -> RenderedOut:
    actor = membership_get(user=request.user, slug=slug)
    response = selectors.response_get(actor=actor, response_id=response_id)
    if len(payload.inputs) > variables.MAX_INPUTS or any(len(value) > variables.MAX_INPUT_VALUE for value in payload.inputs.values()):
        raise ValidationError({"inputs": [f"At most {variables.MAX_INPUTS} inputs of {variables.MAX_INPUT_VALUE} characters each."]})
    recipient = selectors.recipient_for(actor=actor, to=payload.to, conversation_id=payload.conversation_id)
    rendered = actions.response_render(
        actor=actor, response=response, context=actions.RenderContext(recipient=recipient, inputs=payload.inputs)
    )
    return RenderedOut(
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        attachments=[_attachment_out(attachment) for attachment in rendered.attachments],
        missing_inputs=list(rendered.missing_inputs),
    )
