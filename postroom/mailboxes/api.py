"""API for connected mailboxes: status, import range, connection test, re-import, removal.

Same rules as the pages (``mailboxes.selectors``): a member sees the mailboxes they connected,
organization admins see every mailbox's status; anything else is 404. No answer carries a
credential: ``MailboxOut`` is built field by field from the mailbox's configuration and state,
and ``credentials`` (sealed), the private CA and the sync lease are never read here.

Connecting a mailbox and changing its credentials are not in the API: both send a password or
OAuth grant and need the member's password confirmed minutes before (R6), which only the pages
can ask for. Removing a mailbox needs that confirmation too, so it works from a session that
confirmed recently and never from an API token.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status

from postroom.api.auth import require_recent_confirmation
from postroom.api.errors import ERRORS
from postroom.api.pagination import Page, PageParams, paginate
from postroom.api.schemas import Input
from postroom.mailboxes import actions, selectors
from postroom.mailboxes.models import AuthKind, Folder, FolderRole, Mailbox, MailboxStatus, TlsModeChoice
from postroom.orgs.selectors import membership_get

router = Router(tags=["mailboxes"])


class MailboxOwnerOut(Schema):
    id: int = Field(description="The owner's membership id.")
    email: str


class ServerOut(Schema):
    host: str
    port: int
    tls: TlsModeChoice


class FolderOut(Schema):
    name: str
    role: FolderRole
    messages_total: int
    messages_done: int
    last_synced_at: datetime | None


class ProgressOut(Schema):
    done: int
    total: int


class MailboxOut(Schema):
    id: uuid.UUID
    name: str
    email_address: str
    owner: MailboxOwnerOut
    is_own: bool = Field(description="Whether the caller connected this mailbox (only its owner can test it or change its import range).")
    status: MailboxStatus
    status_reason: str
    auth_kind: AuthKind
    imap: ServerOut
    smtp: ServerOut
    import_since: date | None = Field(description="How far back mail is imported; null: everything.")
    last_synced_at: datetime | None
    unreachable_since: datetime | None
    progress: ProgressOut
    folders: list[FolderOut]
    created_at: datetime


class MailboxPage(Page[MailboxOut]):
    """One page of mailboxes, by name."""


class ImportRangeIn(Input):
    import_since: date | None = Field(description="Import mail from this day on; null imports everything.")


class ReimportIn(Input):
    since: date | None = Field(description="Import again from this day on; null imports everything.")


class MailboxTestOut(Schema):
    ok: bool
    problems: list[str] = Field(description="What failed, per server, in words for people; empty when both servers accepted the sign-in.")


def _folder_out(folder: Folder) -> FolderOut:
    return FolderOut(
        name=folder.name,
        role=FolderRole(folder.role),
        messages_total=folder.messages_total,
        messages_done=folder.messages_done,
        last_synced_at=folder.last_synced_at,
    )


def _mailbox_out(mailbox: Mailbox, *, actor_id: int) -> MailboxOut:
    progress = selectors.mailbox_progress(mailbox)
    return MailboxOut(
        id=mailbox.pk,
        name=mailbox.name,
        email_address=mailbox.email_address,
        owner=MailboxOwnerOut(id=mailbox.owner_id, email=mailbox.owner.user.email),
        is_own=mailbox.owner_id == actor_id,
        status=MailboxStatus(mailbox.status),
        status_reason=mailbox.status_reason,
        auth_kind=AuthKind(mailbox.auth_kind),
        imap=ServerOut(host=mailbox.imap_host, port=mailbox.imap_port, tls=TlsModeChoice(mailbox.imap_tls)),
        smtp=ServerOut(host=mailbox.smtp_host, port=mailbox.smtp_port, tls=TlsModeChoice(mailbox.smtp_tls)),
        import_since=mailbox.import_since,
        last_synced_at=mailbox.last_synced_at,
        unreachable_since=mailbox.unreachable_since,
        progress=ProgressOut(done=progress.done, total=progress.total),
        folders=[_folder_out(folder) for folder in mailbox.folders.all()],
        created_at=mailbox.created_at,
    )


def _not_in_future(day: date | None, field: str) -> date | None:
    if day is not None and day > timezone.now().date():
        raise ValidationError({field: "Choose a day that is not in the future."})
    return day


@router.get(
    "/orgs/{slug}/mailboxes", response={200: MailboxPage, **ERRORS}, summary="List mailboxes (your own; admins: the organization's)"
)
def mailbox_list(request: HttpRequest, slug: str, page: Query[PageParams], mine: Query[bool] = False) -> MailboxPage:
    actor = membership_get(user=request.user, slug=slug)
    mailboxes = selectors.mailboxes_of_member(actor=actor) if mine else selectors.mailboxes_of_organization(actor=actor)
    paged = paginate(mailboxes, order=("name", "id"), params=page, key="mailboxes")
    return MailboxPage(items=[_mailbox_out(mailbox, actor_id=actor.pk) for mailbox in paged.items], next=paged.next)


@router.get("/orgs/{slug}/mailboxes/{uuid:mailbox_id}", response={200: MailboxOut, **ERRORS}, summary="One mailbox")
def mailbox_detail(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> MailboxOut:
    actor = membership_get(user=request.user, slug=slug)
    return _mailbox_out(selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id), actor_id=actor.pk)


@router.patch(
    "/orgs/{slug}/mailboxes/{uuid:mailbox_id}", response={200: MailboxOut, **ERRORS}, summary="Change how far back mail is imported (owner)"
)
def mailbox_update(request: HttpRequest, slug: str, mailbox_id: uuid.UUID, payload: ImportRangeIn) -> MailboxOut:
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get_own(actor=actor, mailbox_id=mailbox_id)
    since = _not_in_future(payload.import_since, "import_since")
    actions.mailbox_set_import_since(actor=actor, mailbox=mailbox, since=since, request=request)
    return _mailbox_out(selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id), actor_id=actor.pk)


@router.post(
    "/orgs/{slug}/mailboxes/{uuid:mailbox_id}/test",
    response={200: MailboxTestOut, **ERRORS},
    summary="Test the stored sign-in on both servers (owner)",
)
def mailbox_test(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> MailboxTestOut:
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get_own(actor=actor, mailbox_id=mailbox_id)
    outcome = actions.mailbox_test(actor=actor, mailbox=mailbox, request=request)
    return MailboxTestOut(ok=outcome.ok, problems=list(outcome.problems))


@router.post(
    "/orgs/{slug}/mailboxes/{uuid:mailbox_id}/reimport", response={200: MailboxOut, **ERRORS}, summary="Import a mailbox again (admins)"
)
def mailbox_reimport(request: HttpRequest, slug: str, mailbox_id: uuid.UUID, payload: ReimportIn) -> MailboxOut:
    actor = membership_get(user=request.user, slug=slug)
    if not selectors.can_oversee_mailboxes(actor):
        raise PermissionDenied("Only organization admins can have a mailbox imported again.")
    mailbox = selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id)
    actions.mailbox_reimport_from(actor=actor, mailbox=mailbox, since=_not_in_future(payload.since, "since"), request=request)
    return _mailbox_out(selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id), actor_id=actor.pk)


@router.delete(
    "/orgs/{slug}/mailboxes/{uuid:mailbox_id}",
    response={204: None, **ERRORS},
    summary="Remove a mailbox (needs a fresh password confirmation)",
)
def mailbox_remove(request: HttpRequest, slug: str, mailbox_id: uuid.UUID) -> Status[None]:
    actor = membership_get(user=request.user, slug=slug)
    mailbox = selectors.mailbox_get(actor=actor, mailbox_id=mailbox_id)
    require_recent_confirmation(request, what="Removing a mailbox")
    actions.mailbox_remove(actor=actor, mailbox=mailbox, request=request)
    return Status(204, None)
