"""Every write to responses, and ``response_render``, which fills a response in for one message.

Attackers and defences:
- A member who writes where their role does not allow: an organization response needs
  ``MANAGE_ORGANIZATION_RESPONSES`` (owners, admins); a team's needs being a (non-observer) member
  of that team, or an admin; a personal one belongs to its owner alone. Refused with 403
  (``PermissionDenied``); objects the actor cannot see never get here (the selectors answer 404).
  The organization, owner and team are set here from the actor and checked ids, never taken from
  a client as they are (R23).
- Stored XSS and tracking through the body: it is sanitised on save and again on every render
  (``postroom.responses.sanitize``, R27). Template injection through the body or subject: the
  variables are filled by ``postroom.responses.variables``, never by a template engine (R39).
- Content at rest: names, subjects, bodies and attachment names are sealed, attachment contents
  encrypted blobs; the audit trail records ids, scopes and counts, never a name or any content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.core.blobs import blob_get, blob_put
from postroom.core.keys import org_scope
from postroom.mime.filenames import safe_filename
from postroom.orgs.models import Membership, Team
from postroom.orgs.policy import Permission, role_allows
from postroom.responses import variables
from postroom.responses.models import Response, ResponseAttachment, Scope
from postroom.responses.sanitize import html_to_text, sanitize_response_html
from postroom.responses.selectors import actor_team_ids, responses_visible_to

MAX_NAME = 120
MAX_SUBJECT = 998
MAX_BODY = 200_000
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # all of one response's attachments together


# --- permissions ----------------------------------------------------------------------------------------
def can_manage_scope(actor: Membership, scope: str, team: Team | None) -> bool:
    if scope == Scope.ORGANIZATION:
        return role_allows(actor.role, Permission.MANAGE_ORGANIZATION_RESPONSES)
    if scope == Scope.TEAM:
        return team is not None and team.organization_id == actor.organization_id and team.pk in actor_team_ids(actor, managing=True)
    return scope == Scope.PERSONAL


def can_manage(actor: Membership, response: Response) -> bool:
    if response.organization_id != actor.organization_id:
        return False
    if response.scope == Scope.PERSONAL:
        return response.owner_id == actor.pk
    return can_manage_scope(actor, response.scope, response.team)


def refusal_message(scope: str) -> str:
    if scope == Scope.ORGANIZATION:
        return "Only owners and admins manage the organization's responses."
    return "Only members of a team manage its responses."


def _check_manage(actor: Membership, response: Response) -> None:
    if not can_manage(actor, response):
        raise PermissionDenied(refusal_message(response.scope))


# --- content --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResponseContent:
    name: str
    subject: str = ""
    body: str = ""


def _clean_content(content: ResponseContent) -> ResponseContent:
    errors: dict[str, list[str]] = {}
    name = content.name.strip()
    if not name:
        errors["name"] = ["Give the response a name."]
    elif len(name) > MAX_NAME:
        errors["name"] = [f"Use at most {MAX_NAME} characters."]
    subject = content.subject.strip()
    if len(subject) > MAX_SUBJECT:
        errors["subject"] = [f"Use at most {MAX_SUBJECT} characters."]
    elif any(character in subject for character in "\r\n\x00"):
        errors["subject"] = ["A subject is one line: remove the line breaks."]
    if len(content.body) > MAX_BODY:
        errors["body"] = [f"The body may be at most {MAX_BODY // 1000} KB of HTML."]
    if errors:
        raise ValidationError(errors)
    return ResponseContent(name=name, subject=subject, body=sanitize_response_html(content.body))


def _scope_fields(actor: Membership, scope: str, team: Team | None) -> dict[str, Any]:
    if scope not in Scope.values:
        raise ValidationError({"scope": ["Choose personal, team or organization."]})
    if scope == Scope.TEAM:
        if team is None:
            raise ValidationError({"team": ["Choose the team this response belongs to."]})
        if team.organization_id != actor.organization_id:
            raise ValidationError({"team": ["Choose one of your organization's teams."]})
    if not can_manage_scope(actor, scope, team):
        raise PermissionDenied(refusal_message(scope))
    return {
        "scope": scope,
        "owner": actor if scope == Scope.PERSONAL else None,
        "team": team if scope == Scope.TEAM else None,
    }


def response_create(
    *,
    actor: Membership,
    scope: str,
    content: ResponseContent,
    team: Team | None = None,
    request: HttpRequest | None = None,
) -> Response:
    """A new response in ``scope`` (``team`` for a team's); the body is sanitised before it is stored."""
    fields = _scope_fields(actor, scope, team)
    cleaned = _clean_content(content)
    response = Response(organization_id=actor.organization_id, created_by=actor, **fields)
    response.name, response.subject, response.body = cleaned.name, cleaned.subject, cleaned.body
    with transaction.atomic():
        response.save()
        audit_record(
            action="responses.created", actor=actor.user, organization=actor.organization, request=request,
            target=response, target_label=response.get_scope_display() + " response", details={"scope": scope},
        )  # fmt: skip
    return response


def response_update(
    *,
    actor: Membership,
    response: Response,
    content: ResponseContent,
    scope: str | None = None,
    team: Team | None = None,
    request: HttpRequest | None = None,
) -> Response:
    """Change a response's content, and its scope when ``scope`` is given (which the actor must
    be allowed to manage too: a member can share a personal response with a team of theirs)."""
    _check_manage(actor, response)
    changed = ["name_sealed", "subject_sealed", "body_sealed", "updated_at"]
    details: dict[str, Any] = {"scope": response.scope}
    if scope is not None:
        new_team = team if scope == Scope.TEAM else None
        if scope != response.scope or (new_team is not None and new_team.pk != response.team_id):
            fields = _scope_fields(actor, scope, new_team)
            for name, value in fields.items():
                setattr(response, name, value)
            changed += ["scope", "owner", "team"]
            details = {"scope": scope, "previous_scope": details["scope"]}
    cleaned = _clean_content(content)
    response.name, response.subject, response.body = cleaned.name, cleaned.subject, cleaned.body
    with transaction.atomic():
        response.save(update_fields=changed)
        audit_record(
            action="responses.updated", actor=actor.user, organization=actor.organization, request=request,
            target=response, target_label=response.get_scope_display() + " response", details=details,
        )  # fmt: skip
    return response


def response_delete(*, actor: Membership, response: Response, request: HttpRequest | None = None) -> None:
    _check_manage(actor, response)
    with transaction.atomic():
        audit_record(
            action="responses.deleted", actor=actor.user, organization=actor.organization, request=request,
            target=response, target_label=response.get_scope_display() + " response", details={"scope": response.scope},
        )  # fmt: skip
        response.delete()
    # The attachment blobs stay: blobs are content-addressed and may be shared with a sent
    # message; unreferenced blobs are the blob sweeper's business (postroom.ops.blobs).


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str
    content: bytes


def response_attachments_add(
    *, actor: Membership, response: Response, files: Sequence[NewAttachment], request: HttpRequest | None = None
) -> list[ResponseAttachment]:
    _check_manage(actor, response)
    if not files:
        return []
    existing = list(response.attachments.all())
    if len(existing) + len(files) > MAX_ATTACHMENTS:
        raise ValidationError({"attachments": [f"A response may have at most {MAX_ATTACHMENTS} attachments."]})
    total = sum(attachment.size for attachment in existing) + sum(len(file.content) for file in files)
    if total > MAX_ATTACHMENT_BYTES:
        raise ValidationError({"attachments": [f"A response's attachments may total at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB."]})
    scope = org_scope(actor.organization_id)
    # Blobs first, outside the transaction (slow I/O); an orphan after a rollback is harmless.
    stored = [(file, blob_put(scope, file.content)) for file in files]
    created = []
    with transaction.atomic():
        for file, blob in stored:
            content_type = (file.content_type or "application/octet-stream")[:100]
            attachment = ResponseAttachment(
                organization_id=actor.organization_id, response=response, content_type=content_type, size=len(file.content), blob=blob
            )
            attachment.filename = safe_filename(file.filename, content_type)
            attachment.save()
            created.append(attachment)
        Response.objects.filter(pk=response.pk).update(updated_at=timezone.now())
        audit_record(
            action="responses.attachments_added", actor=actor.user, organization=actor.organization, request=request,
            target=response, target_label=response.get_scope_display() + " response", details={"attachments": len(created)},
        )  # fmt: skip
    return created


def response_attachment_remove(
    *, actor: Membership, response: Response, attachment: ResponseAttachment, request: HttpRequest | None = None
) -> None:
    _check_manage(actor, response)
    if attachment.response_id != response.pk:
        raise ValidationError({"attachment": ["This file is not attached to this response."]})
    with transaction.atomic():
        attachment.delete()
        Response.objects.filter(pk=response.pk).update(updated_at=timezone.now())
        audit_record(
            action="responses.attachment_removed", actor=actor.user, organization=actor.organization, request=request,
            target=response, target_label=response.get_scope_display() + " response",
        )  # fmt: skip


# --- rendering ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderContext:
    """What the variables are filled from. ``recipient`` is (display name, address) of the first
    recipient, or None; ``inputs`` maps each custom input's label to what the member typed."""

    recipient: tuple[str, str] | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    today: Any = None  # a date; today's (in the server's time zone) when None


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    attachments: tuple[ResponseAttachment, ...]
    missing_inputs: tuple[str, ...] = ()


def split_name(display_name: str) -> tuple[str, str]:
    """("Dana", "Customer") from "Dana Customer", and from "Customer, Dana"."""
    name = " ".join(display_name.replace('"', " ").split())
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.partition(" ")
    return first, last


def variable_values(*, actor: Membership, recipient: tuple[str, str] | None, today: Any = None) -> dict[str, str]:
    first, last = split_name(recipient[0]) if recipient else ("", "")
    day = today or timezone.localdate()
    return {
        "recipient_first_name": first,
        "recipient_last_name": last,
        "recipient_email": recipient[1] if recipient else "",
        "sender_name": actor.user.name or actor.user.email.split("@")[0],
        "organization_name": actor.organization.name,
        "today": day.isoformat(),
    }


def response_inputs(response: Response) -> list[str]:
    """The labels of the custom inputs (``{{ input:Order number }}``) the member fills in."""
    return variables.input_labels((response.subject or "", False), (response.body or "", True))


def response_render(*, actor: Membership, response: Response, context: RenderContext) -> Rendered:
    """Fill ``response`` in for one message written by ``actor``, ready to send.

    The caller has already fetched ``response`` through ``selectors.response_get`` (or another
    selector scoped to ``actor``); this checks again that the actor may see it, so a rule whose
    author has since lost access to the response renders nothing (``PermissionDenied``; R38).

    Variables are filled by the restricted engine (``postroom.responses.variables``; R39):
    recipient first/last name and address from ``context.recipient``, the sender's name and the
    organization's from ``actor``, today's date as YYYY-MM-DD, and custom inputs from
    ``context.inputs``. Inputs without a value, and unknown ``{{ … }}`` tokens, stay visible as
    written; ``Rendered.missing_inputs`` lists the former so an automatic caller can refuse to
    send. The HTML is sanitised again after filling in (R27), the text is derived from it, the
    subject is one line. ``attachments`` are the response's ``ResponseAttachment`` rows: read
    their content with ``response_attachment_content``.
    """
    if not responses_visible_to(actor=actor).filter(pk=response.pk).exists():
        raise PermissionDenied("This response is not available to this member.")
    values = variable_values(actor=actor, recipient=context.recipient, today=context.today)
    inputs = {
        label[: variables.MAX_INPUT_LABEL].strip(): value[: variables.MAX_INPUT_VALUE] for label, value in context.inputs.items() if value
    }
    subject = variables.fill(response.subject or "", values, inputs, html=False)
    html = sanitize_response_html(variables.fill(response.body or "", values, inputs, html=True))
    missing = tuple(label for label in response_inputs(response) if label not in inputs)
    return Rendered(
        subject=subject,
        html=html,
        text=html_to_text(html),
        attachments=tuple(response.attachments.all()),
        missing_inputs=missing,
    )


def response_attachment_content(attachment: ResponseAttachment) -> bytes:
    return blob_get(attachment.key_scope(), attachment.blob)
