"""Reads of responses, always scoped to the acting membership.

Attacker: a member who guesses the id of a teammate's personal response, of another team's, or
of anything in another organization, through a page, the picker, the render endpoint or the API.
Every query starts from ``responses_visible_to``: the actor's organization, and within it the
organization's responses, those of the teams the actor belongs to (admins and owners: of every
team, since they manage teams) and the actor's own personal ones. Nobody else's personal response
is visible, not even to an owner. Missing and invisible give the same 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404

from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.orgs.policy import Permission, role_allows
from postroom.responses.models import Response, ResponseAttachment, Scope


def oversees_teams(actor: Membership) -> bool:
    return role_allows(actor.role, Permission.MANAGE_TEAMS)


def actor_team_ids(actor: Membership, *, managing: bool = False) -> list[int]:
    """The teams whose responses the actor sees (or, with ``managing``, may write)."""
    if oversees_teams(actor):
        return list(Team.objects.filter(organization_id=actor.organization_id).values_list("pk", flat=True))
    rows = TeamMembership.objects.filter(membership=actor, team__organization_id=actor.organization_id)
    if managing:
        rows = rows.filter(observer=False)
    return list(rows.values_list("team_id", flat=True))


def teams_for_responses(*, actor: Membership) -> QuerySet[Team]:
    """Teams the actor may write responses for (the choices of the scope field)."""
    return Team.objects.filter(pk__in=actor_team_ids(actor, managing=True)).order_by("name")


def responses_visible_to(*, actor: Membership, scope: str | None = None) -> QuerySet[Response]:
    visible = Q(scope=Scope.ORGANIZATION) | Q(scope=Scope.TEAM, team_id__in=actor_team_ids(actor)) | Q(scope=Scope.PERSONAL, owner=actor)
    responses = Response.objects.filter(visible, organization_id=actor.organization_id).select_related("team", "organization")
    if scope:
        responses = responses.filter(scope=scope)
    return responses


def response_get(*, actor: Membership, response_id: UUID | str) -> Response:
    try:
        response = responses_visible_to(actor=actor).filter(pk=response_id).first()
    except (ValueError, TypeError, ValidationError):  # not a UUID: the same 404 as a missing one
        response = None
    if response is None:
        raise Http404
    return response


def responses_by_name(*, actor: Membership, scope: str | None = None, limit: int = 1000) -> list[Response]:
    """For pages and the picker: names are sealed, so they are sorted here, not in SQL."""
    responses = list(responses_visible_to(actor=actor, scope=scope).order_by("-created_at")[:limit])
    return sorted(responses, key=lambda response: ((response.name or "").casefold(), str(response.pk)))


def attachments_for_sending(*, actor: Membership, attachment_ids: Iterable[str]) -> list[ResponseAttachment]:
    """Attachments of responses the actor can see, by id, for a message being sent. Anything
    else (a bad id, another member's personal response, another organization) is left out."""
    ids = []
    for value in attachment_ids:
        try:
            ids.append(UUID(str(value)))
        except ValueError:
            continue
    visible = responses_visible_to(actor=actor).values("pk")
    found = ResponseAttachment.objects.filter(pk__in=ids, response__in=visible, organization_id=actor.organization_id)
    by_id = {attachment.pk: attachment for attachment in found}
    return [by_id[pk] for pk in dict.fromkeys(ids) if pk in by_id]


def recipient_for(*, actor: Membership, to: str = "", conversation_id: UUID | None = None) -> tuple[str, str] | None:
    """Whom the variables address: the first of the addresses in ``to`` (what the composer's To
    field holds), else, for a conversation the actor can answer, whom a reply would go to.

    Raises ``ValidationError`` on ``to`` when it cannot be read, ``Http404`` for a conversation the
    actor cannot answer (outbox rules: in their organization, reached one of their mailboxes)."""
    from postroom.mime.addresses import split_address_field
    from postroom.outbox import compose
    from postroom.outbox.models import OutgoingKind
    from postroom.outbox.selectors import conversation_get, sending_mailboxes

    if to.strip():
        pairs = split_address_field(to)
        if not pairs:
            raise ValidationError({"to": ["These addresses cannot be read; separate them with commas."]})
        return pairs[0]
    if conversation_id is None:
        return None
    conversation = conversation_get(actor=actor, conversation_id=conversation_id)
    mailbox = sending_mailboxes(actor=actor).first()
    if mailbox is None:
        return None
    draft = compose.draft_for(actor=actor, mailbox=mailbox, conversation=conversation, kind=OutgoingKind.REPLY)
    return draft.to[0] if draft.to else None
