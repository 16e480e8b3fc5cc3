"""Reads of mailboxes, scoped to the acting membership.

Attacker: a signed-in member who guesses the id of another member's mailbox, or of a mailbox in
another organization (IDOR, R21), or who hopes a page shows a mailbox's credentials. Defences:
a member reads only the mailboxes they connected; organization admins also see the status of
the organization's mailboxes (never credentials: no view renders ``credentials``, and the
status partial is built from the fields listed in ``MailboxStatusRow``); anything else is 404,
whether it is missing or foreign.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django.utils import timezone

from postroom.mailboxes.connection import MailServers, ServerSettings, TlsMode
from postroom.mailboxes.models import Folder, Mailbox, MailboxStatus, TlsModeChoice
from postroom.orgs.models import Membership
from postroom.orgs.policy import Permission, role_allows


def can_oversee_mailboxes(actor: Membership) -> bool:
    """Admins and owners see every mailbox's status (and can have one re-imported)."""
    return role_allows(actor.role, Permission.MANAGE_SETTINGS)


def _with_folders(queryset: QuerySet[Mailbox]) -> QuerySet[Mailbox]:
    return queryset.select_related("owner__user").prefetch_related(Prefetch("folders", queryset=Folder.objects.order_by("name")))


def mailboxes_of_member(*, actor: Membership) -> QuerySet[Mailbox]:
    return _with_folders(Mailbox.objects.filter(organization_id=actor.organization_id, owner_id=actor.pk)).order_by("name", "created_at")


def mailboxes_of_organization(*, actor: Membership) -> QuerySet[Mailbox]:
    """Every mailbox of the organization, for admins; other members get their own only."""
    queryset = Mailbox.objects.filter(organization_id=actor.organization_id)
    if not can_oversee_mailboxes(actor):
        queryset = queryset.filter(owner_id=actor.pk)
    return _with_folders(queryset).order_by("owner__user__email", "name")


def _parse_id(mailbox_id: str | uuid.UUID) -> uuid.UUID:
    try:
        return mailbox_id if isinstance(mailbox_id, uuid.UUID) else uuid.UUID(str(mailbox_id))
    except ValueError as error:
        raise Http404 from error


def mailbox_get_own(*, actor: Membership, mailbox_id: str | uuid.UUID) -> Mailbox:
    """A mailbox the actor connected: 404 for anyone else's, admins included."""
    mailbox = Mailbox.objects.filter(organization_id=actor.organization_id, owner_id=actor.pk, pk=_parse_id(mailbox_id)).first()
    if mailbox is None:
        raise Http404
    return mailbox


def mailbox_get(*, actor: Membership, mailbox_id: str | uuid.UUID) -> Mailbox:
    """The actor's own mailbox, or for an admin any mailbox of the organization; else 404."""
    mailbox = mailboxes_of_organization(actor=actor).filter(pk=_parse_id(mailbox_id)).first()
    if mailbox is None:
        raise Http404
    return mailbox


def mailbox_servers(mailbox: Mailbox) -> MailServers:
    ca = mailbox.private_ca_pem or None
    return MailServers(
        imap=ServerSettings(host=mailbox.imap_host, port=mailbox.imap_port, tls=TlsMode(mailbox.imap_tls), private_ca_pem=ca),
        smtp=ServerSettings(host=mailbox.smtp_host, port=mailbox.smtp_port, tls=TlsMode(mailbox.smtp_tls), private_ca_pem=ca),
    )


@dataclass(frozen=True)
class MailboxProgress:
    done: int
    total: int
    # Messages per minute since the import began, and the time left at that rate: None until
    # there is something to measure.
    per_minute: float | None
    time_left: timedelta | None

    @property
    def syncing(self) -> bool:
        return self.done < self.total

    @property
    def time_left_text(self) -> str:
        if self.time_left is None:
            return ""
        minutes = max(1, round(self.time_left.total_seconds() / 60))
        return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"

    @property
    def percent(self) -> int:
        return int(self.done * 100 / self.total) if self.total else 100


def mailbox_progress(mailbox: Mailbox, *, now: datetime | None = None) -> MailboxProgress:
    """Import progress over the mailbox's folders (prefetched by the list selectors)."""
    folders = list(mailbox.folders.all())
    done = sum(min(folder.messages_done, folder.messages_total) for folder in folders)
    total = sum(folder.messages_total for folder in folders)
    per_minute = time_left = None
    now = now or timezone.now()
    if mailbox.import_started_at is not None and done and done < total:
        elapsed = (now - mailbox.import_started_at).total_seconds()
        if elapsed > 0:
            per_minute = done * 60 / elapsed
            time_left = timedelta(seconds=round((total - done) * elapsed / done))
    return MailboxProgress(done=done, total=total, per_minute=per_minute, time_left=time_left)


@dataclass(frozen=True)
class MailboxStatusRow:
    """What the status list shows of a mailbox: no credential is reachable from here."""

    id: uuid.UUID
    name: str
    email_address: str
    owner_email: str
    is_own: bool
    status: str
    status_label: str
    status_reason: str
    insecure: bool
    auth_label: str
    import_since: object
    last_synced_at: datetime | None
    unreachable_since: datetime | None
    progress: MailboxProgress
    team_id: int | None = None  # a team mailbox shares everything it receives with this team

    @property
    def state(self) -> str:
        """One word for the badge: needs_reconnect, disconnected, paused, syncing, waiting, synced."""
        if self.status != MailboxStatus.ACTIVE:
            return self.status
        if self.progress.syncing:
            return "syncing"
        return "synced" if self.last_synced_at else "waiting"


def mailbox_status_rows(*, actor: Membership, mailboxes: QuerySet[Mailbox]) -> list[MailboxStatusRow]:
    now = timezone.now()
    return [
        MailboxStatusRow(
            id=mailbox.pk, name=mailbox.name, email_address=mailbox.email_address, owner_email=mailbox.owner.user.email,
            is_own=mailbox.owner_id == actor.pk, status=mailbox.status, status_label=mailbox.get_status_display(),
            status_reason=mailbox.status_reason,
            insecure=TlsModeChoice.INSECURE_PLAINTEXT in {mailbox.imap_tls, mailbox.smtp_tls},
            auth_label=mailbox.get_auth_kind_display(), import_since=mailbox.import_since, last_synced_at=mailbox.last_synced_at,
            unreachable_since=mailbox.unreachable_since, progress=mailbox_progress(mailbox, now=now), team_id=mailbox.team_id,
        )
        for mailbox in mailboxes
    ]
