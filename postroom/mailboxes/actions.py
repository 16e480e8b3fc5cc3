"""Writes to mailboxes: connect, change credentials, test, remove, choose how far back to import.

Every action checks who acts (re-reading the membership, so a role change applies at once),
writes in one transaction with its audit event, and never talks to a mail server or a token
endpoint inside that transaction: a slow server would hold locks for up to the connection
timeout. Connecting and changing credentials test both servers first and store nothing when
either test fails. Secrets (passwords, tokens, client secrets) go only into the sealed
``Mailbox.credentials``; audit details and error messages never carry them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Max
from django.http import HttpRequest
from django.utils import timezone

from postroom.audit.actions import audit_record
from postroom.audit.models import Result
from postroom.conversations.access import access_refresh
from postroom.conversations.models import Conversation, Message
from postroom.mailboxes.connection import (
    DEFAULT_TIMEOUT_SECONDS,
    ConnectionReport,
    Credentials,
    MailServers,
    OAuth2Credentials,
    OAuth2Mechanism,
    PasswordCredentials,
    check_connection,
)
from postroom.mailboxes.models import AuthKind, Folder, Mailbox, MailboxStatus
from postroom.mailboxes.oauth import OAuthError, TokenAnswer, mailbox_sign_in_credentials, refresh_access_token
from postroom.mailboxes.selectors import mailbox_servers
from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.orgs.policy import Permission, role_allows

# Which form field an error of connection.py is about, per error code: "host", "port" and "tls"
# are prefixed with the protocol ("imap_host"); the others name a field as they are.
_ERROR_FIELD = {
    "unknown_host": "host",
    "tls_name_mismatch": "host",
    "connection_failed": "host",
    "connection_refused": "port",
    "timeout": "port",
    "protocol_error": "port",
    "tls_failure": "tls",
    "starttls_unavailable": "tls",
    "insecure_plaintext_refused": "tls",
    "tls_untrusted": "private_ca_pem",
}


@dataclass(frozen=True)
class OAuthGrant:
    """What renews an access token: kept sealed with the mailbox's credentials."""

    token_endpoint: str
    refresh_token: str = field(repr=False)
    client_id: str
    client_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class MailboxSignIn:
    """Servers and credentials, as a member typed them."""

    servers: MailServers
    auth_kind: AuthKind
    username: str
    password: str = field(default="", repr=False)
    access_token: str = field(default="", repr=False)
    oauth: OAuthGrant | None = field(default=None, repr=False)

    @property
    def secret_field(self) -> str:
        return "password" if self.auth_kind == AuthKind.PASSWORD else "access_token"


class MailboxConnectionFailed(ValidationError):  # noqa: N818 (a ValidationError, so forms take it as field errors)
    """The test of the servers failed; ``report`` says how, per server."""

    def __init__(self, errors: dict[str, list[str]], report: ConnectionReport | None = None) -> None:
        super().__init__(errors)
        self.report = report


def _test_timeout() -> float:
    """How long a connection test waits for a silent server (tests shorten it)."""
    return float(getattr(settings, "MAILBOX_TEST_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def _current(actor: Membership) -> Membership:
    current = Membership.objects.select_related("organization", "user").filter(pk=actor.pk).first()
    if current is None:
        raise PermissionDenied("You are no longer a member of this organization.")
    return current


def _require_owner(actor: Membership, mailbox: Mailbox) -> Membership:
    current = _current(actor)
    if mailbox.owner_id != current.pk or mailbox.organization_id != current.organization_id:
        raise PermissionDenied("Only the member who connected this mailbox can do this.")
    return current


def _require_owner_or_admin(actor: Membership, mailbox: Mailbox) -> Membership:
    current = _current(actor)
    if mailbox.organization_id != current.organization_id:
        raise PermissionDenied("Not part of this organization.")
    if mailbox.owner_id != current.pk and not role_allows(current.role, Permission.MANAGE_SETTINGS):
        raise PermissionDenied(f"Your role ({current.role}) does not allow this.")
    return current


def _report_errors(report: ConnectionReport, sign_in: MailboxSignIn) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for prefix, check in (("imap", report.imap), ("smtp", report.smtp)):
        if check.error is None:
            continue
        field = _ERROR_FIELD.get(check.error.code)
        if field is None:  # authentication_failed, and any code added later
            name = sign_in.secret_field if check.error.code == "authentication_failed" else f"{prefix}_host"
        else:
            name = f"{prefix}_{field}" if field in {"host", "port", "tls"} else field
        errors.setdefault(name, []).append(check.error.message)
    return errors


def _obtain_access_token(sign_in: MailboxSignIn) -> tuple[str, TokenAnswer | None]:
    """The access token to test with: the one given, or a fresh one from the refresh token."""
    if sign_in.auth_kind == AuthKind.PASSWORD:
        return "", None
    if sign_in.access_token or sign_in.oauth is None:
        return sign_in.access_token, None
    try:
        answer = refresh_access_token(
            token_endpoint=sign_in.oauth.token_endpoint, refresh_token=sign_in.oauth.refresh_token,
            client_id=sign_in.oauth.client_id, client_secret=sign_in.oauth.client_secret,
        )
    except OAuthError as error:
        raise MailboxConnectionFailed({"refresh_token": [str(error)]}) from error
    return answer.access_token, answer


def _login_credentials(sign_in: MailboxSignIn, access_token: str) -> Credentials:
    try:
        if sign_in.auth_kind == AuthKind.PASSWORD:
            return PasswordCredentials(username=sign_in.username, password=sign_in.password)
        mechanism = OAuth2Mechanism.XOAUTH2 if sign_in.auth_kind == AuthKind.XOAUTH2 else OAuth2Mechanism.OAUTHBEARER
        return OAuth2Credentials(username=sign_in.username, access_token=access_token, mechanism=mechanism)
    except ValueError as error:  # UnsafeProtocolValue: a control character in a credential
        raise MailboxConnectionFailed({sign_in.secret_field: [str(error)]}) from error


def _tested(sign_in: MailboxSignIn) -> tuple[dict[str, Any], TokenAnswer | None]:
    """Test both servers and return the credentials to seal. Callers run this before they
    open their transaction: a server that answers slowly must not hold database locks."""
    access_token, answer = _obtain_access_token(sign_in)
    credentials = _login_credentials(sign_in, access_token)
    report = check_connection(sign_in.servers, credentials, timeout=_test_timeout())
    if not report.ok:
        raise MailboxConnectionFailed(_report_errors(report, sign_in), report)
    sealed: dict[str, Any] = {"username": sign_in.username}
    if sign_in.auth_kind == AuthKind.PASSWORD:
        sealed["password"] = sign_in.password
    else:
        sealed["access_token"] = access_token
        if sign_in.oauth is not None:
            sealed |= {
                "refresh_token": (answer.refresh_token if answer and answer.refresh_token else sign_in.oauth.refresh_token),
                "token_endpoint": sign_in.oauth.token_endpoint,
                "client_id": sign_in.oauth.client_id,
                "client_secret": sign_in.oauth.client_secret,
            }
    return sealed, answer


def _apply_sign_in(mailbox: Mailbox, sign_in: MailboxSignIn, sealed: dict[str, Any], answer: TokenAnswer | None) -> None:
    servers = sign_in.servers
    mailbox.imap_host, mailbox.imap_port, mailbox.imap_tls = servers.imap.host, servers.imap.port, servers.imap.tls.value
    mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_tls = servers.smtp.host, servers.smtp.port, servers.smtp.tls.value
    mailbox.private_ca_pem = servers.imap.private_ca_pem or servers.smtp.private_ca_pem or ""
    mailbox.auth_kind = sign_in.auth_kind.value
    mailbox.credentials = sealed
    mailbox.access_token_expires_at = answer.expires_at if answer else None


def mailbox_test_sign_in(*, actor: Membership, sign_in: MailboxSignIn) -> None:
    """The connect form's "Test" button: ``MailboxConnectionFailed`` or nothing. Nothing is
    stored or audited: the member has not given Postroom anything yet."""
    _current(actor)
    _tested(sign_in)


def mailbox_connect(
    *, actor: Membership, name: str, email_address: str, sign_in: MailboxSignIn, import_since: date | None, request: HttpRequest | None = None
) -> Mailbox:
    """Test both servers, then store the mailbox with its credentials sealed. On any failure
    ``MailboxConnectionFailed`` names the field to fix and nothing is stored."""
    _current(actor)
    sealed, answer = _tested(sign_in)
    with transaction.atomic():
        current = _current(actor)
        mailbox = Mailbox(
            organization_id=current.organization_id, owner=current, name=name or email_address, email_address=email_address,
            import_since=import_since, import_started_at=timezone.now(),
        )
        _apply_sign_in(mailbox, sign_in, sealed, answer)
        mailbox.save()
        audit_record(
            action="mailbox.connected", actor=current.user, organization=current.organization, request=request, target=mailbox,
            target_label=email_address, details={"auth": sign_in.auth_kind.value, "imap_host": sign_in.servers.imap.host, "smtp_host": sign_in.servers.smtp.host},
        )
    return mailbox


def mailbox_update_credentials(*, actor: Membership, mailbox: Mailbox, sign_in: MailboxSignIn, request: HttpRequest | None = None) -> Mailbox:
    """Reconnect: test the new servers/credentials, then replace the old ones and clear a
    needs-reconnecting or disconnected state. The caller has had the password confirmed (R6)."""
    _require_owner(actor, mailbox)
    sealed, answer = _tested(sign_in)
    with transaction.atomic():
        current = _require_owner(actor, mailbox)
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        _apply_sign_in(mailbox, sign_in, sealed, answer)
        mailbox.status, mailbox.status_reason, mailbox.unreachable_since = MailboxStatus.ACTIVE, "", None
        mailbox.save()
        audit_record(
            action="mailbox.credentials_changed", actor=current.user, organization=current.organization, request=request, target=mailbox,
            target_label=mailbox.email_address, details={"auth": sign_in.auth_kind.value},
        )
    return mailbox


@dataclass(frozen=True)
class MailboxTestOutcome:
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def mailbox_test(*, actor: Membership, mailbox: Mailbox, request: HttpRequest | None = None) -> MailboxTestOutcome:
    """Sign in to both servers with the stored credentials and report; the result is audited.
    A revoked OAuth2 grant found here puts the mailbox in NEEDS_RECONNECT (see oauth.py)."""
    current = _require_owner(actor, mailbox)
    codes: dict[str, str]
    try:
        credentials = mailbox_sign_in_credentials(mailbox)
    except OAuthError as error:
        outcome, codes = MailboxTestOutcome(problems=(str(error),)), {"oauth": type(error).__name__}
    else:
        report = check_connection(mailbox_servers(mailbox), credentials, timeout=_test_timeout())
        checks = (("imap", report.imap), ("smtp", report.smtp))
        outcome = MailboxTestOutcome(problems=tuple(check.error.message for _, check in checks if check.error is not None))
        codes = {name: check.error.code if check.error else "ok" for name, check in checks}
    audit_record(
        action="mailbox.tested", actor=current.user, organization=current.organization, request=request, target=mailbox,
        target_label=mailbox.email_address, result=Result.SUCCESS if outcome.ok else Result.FAILURE, details=codes,
    )
    return outcome


def _delete_orphans(message_ids: set[uuid.UUID]) -> int:
    """Messages that were in the removed mailbox and are in no other one, and conversations
    left empty by that. Blobs are shared by content inside the organization and stay."""
    orphans = Message.objects.filter(pk__in=message_ids).annotate(copy_count=Count("copies")).filter(copy_count=0)
    conversation_ids = set(orphans.values_list("conversation_id", flat=True))
    deleted = orphans.count()
    Message.objects.filter(pk__in=list(orphans.values_list("pk", flat=True))).delete()
    affected = Conversation.objects.filter(pk__in=conversation_ids).annotate(messages_left=Count("messages"), latest=Max("messages__sent_at"))
    for conversation in affected:
        if conversation.messages_left == 0:
            conversation.delete()
        else:
            conversation.message_count = conversation.messages_left
            conversation.last_message_at = conversation.latest or conversation.last_message_at
            conversation.save(update_fields=["message_count", "last_message_at"])
    return deleted


def mailbox_remove(*, actor: Membership, mailbox: Mailbox, request: HttpRequest | None = None) -> None:
    """Remove the mailbox, its folders and copies. Messages that no other mailbox of the
    organization holds are deleted too; a message a teammate also received stays for them.
    Nothing on the mail server is touched."""
    with transaction.atomic():
        current = _require_owner_or_admin(actor, mailbox)
        locked = Mailbox.objects.select_for_update().filter(pk=mailbox.pk).first()
        if locked is None:
            return
        message_ids = set(locked.copies.values_list("message_id", flat=True))
        conversation_ids = set(Message.objects.filter(pk__in=message_ids).values_list("conversation_id", flat=True))
        label, mailbox_id = locked.email_address, locked.pk
        locked.delete()
        deleted = _delete_orphans(message_ids)
        access_refresh(conversation_ids)
        audit_record(
            action="mailbox.removed", actor=current.user, organization=current.organization, request=request,
            target_label=label, details={"mailbox": str(mailbox_id), "messages_deleted": deleted, "by_owner": mailbox.owner_id == current.pk},
        )


def _reset_folders(mailbox: Mailbox) -> None:
    """Make every folder look never synced, so sync imports it again newest first down to
    ``import_since``. Ingest is idempotent (folder, UIDVALIDITY, UID), so what is already
    stored is found again, not duplicated."""
    Folder.objects.filter(mailbox=mailbox).update(
        uidvalidity=None, highest_uid=0, highest_modseq=None, backfill_below_uid=None, messages_total=0, messages_done=0,
    )


def mailbox_reimport_from(*, actor: Membership, mailbox: Mailbox, since: date | None, request: HttpRequest | None = None) -> Mailbox:
    """An organization admin has a mailbox imported again from ``since`` (None: everything)."""
    with transaction.atomic():
        current = _current(actor)
        if mailbox.organization_id != current.organization_id:
            raise PermissionDenied("Not part of this organization.")
        if not role_allows(current.role, Permission.MANAGE_SETTINGS):
            raise PermissionDenied(f"Your role ({current.role}) does not allow this.")
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        mailbox.import_since, mailbox.import_started_at = since, timezone.now()
        mailbox.save(update_fields=["import_since", "import_started_at"])
        _reset_folders(mailbox)
        audit_record(
            action="mailbox.reimport_requested", actor=current.user, organization=current.organization, request=request, target=mailbox,
            target_label=mailbox.email_address, details={"since": since.isoformat() if since else "everything"},
        )
    return mailbox


def mailbox_set_import_since(*, actor: Membership, mailbox: Mailbox, since: date | None, request: HttpRequest | None = None) -> Mailbox:
    """The owner chooses how far back mail is imported. Going further back imports the older
    mail (folders are reset; nothing is duplicated); a shorter range keeps what is stored."""
    with transaction.atomic():
        current = _require_owner(actor, mailbox)
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        previous = mailbox.import_since
        further_back = previous is not None and (since is None or since < previous)
        mailbox.import_since = since
        fields = ["import_since"]
        if further_back:
            mailbox.import_started_at = timezone.now()
            fields.append("import_started_at")
            _reset_folders(mailbox)
        mailbox.save(update_fields=fields)
        audit_record(
            action="mailbox.import_range_changed", actor=current.user, organization=current.organization, request=request, target=mailbox,
            target_label=mailbox.email_address,
            details={"since": since.isoformat() if since else "everything", "from": previous.isoformat() if previous else "everything"},
        )
    return mailbox


def mailbox_store_refreshed_token(*, mailbox: Mailbox, answer: TokenAnswer) -> None:
    """Keep a renewed access token (and a rotated refresh token). Routine, so not audited."""
    with transaction.atomic():
        locked = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        credentials = dict(locked.credentials or {})
        credentials["access_token"] = answer.access_token
        if answer.refresh_token:
            credentials["refresh_token"] = answer.refresh_token
        locked.credentials = credentials
        locked.access_token_expires_at = answer.expires_at
        locked.save(update_fields=["credentials_sealed", "access_token_expires_at"])
    mailbox.credentials = credentials
    mailbox.access_token_expires_at = answer.expires_at


def mailbox_mark_needs_reconnect(*, mailbox: Mailbox, reason: str) -> None:
    """A revoked grant or refused credentials: stop trying and show the member why."""
    with transaction.atomic():
        locked = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
        if locked.status == MailboxStatus.NEEDS_RECONNECT and locked.status_reason == reason[:300]:
            return
        locked.status, locked.status_reason = MailboxStatus.NEEDS_RECONNECT, reason[:300]
        locked.save(update_fields=["status", "status_reason"])
        audit_record(
            action="mailbox.needs_reconnect", organization=locked.organization, target=locked, target_label=locked.email_address,
            result=Result.FAILURE, details={"reason": locked.status_reason},
        )
    mailbox.status, mailbox.status_reason = locked.status, locked.status_reason


# --- what the sync service learns about a mailbox (system writes, no acting member) -------------
DISCONNECTED_AFTER = timedelta(minutes=30)


def mailbox_record_reachable(*, mailbox_id: uuid.UUID) -> None:
    """The server answered: the mailbox is active again (audited when it had been disconnected)."""
    now = timezone.now()
    with transaction.atomic():
        came_back = Mailbox.objects.filter(pk=mailbox_id, status=MailboxStatus.DISCONNECTED).update(
            status=MailboxStatus.ACTIVE, status_reason="", unreachable_since=None, last_synced_at=now
        )
        Mailbox.objects.filter(pk=mailbox_id, status=MailboxStatus.ACTIVE).update(unreachable_since=None, last_synced_at=now)
        if came_back:
            mailbox = Mailbox.objects.get(pk=mailbox_id)
            audit_record(action="mailbox.reconnected", organization=mailbox.organization, target=mailbox, target_label=mailbox.email_address)


def mailbox_record_unreachable(*, mailbox_id: uuid.UUID, reason: str) -> None:
    """Remember when the server stopped answering; after 30 minutes show the mailbox as disconnected."""
    now = timezone.now()
    with transaction.atomic():
        Mailbox.objects.filter(pk=mailbox_id, unreachable_since__isnull=True).update(unreachable_since=now)
        disconnected = Mailbox.objects.filter(
            pk=mailbox_id, status=MailboxStatus.ACTIVE, unreachable_since__lt=now - DISCONNECTED_AFTER
        ).update(status=MailboxStatus.DISCONNECTED, status_reason=reason[:300])
        if disconnected:
            mailbox = Mailbox.objects.get(pk=mailbox_id)
            audit_record(
                action="mailbox.disconnected", organization=mailbox.organization, target=mailbox, target_label=mailbox.email_address,
                result=Result.FAILURE, details={"reason": reason[:300]},
            )


def mailbox_team_set(*, actor: Membership, mailbox: Mailbox, team: Team | None, request: HttpRequest | None = None) -> None:
    """Make a mailbox a team mailbox (everything it receives from now on is shared with the
    team), or a personal one again. Only its owner or an admin; the owner must be in the team."""
    if mailbox.organization_id != actor.organization_id:
        raise PermissionDenied("not in this organization")
    if mailbox.owner_id != actor.pk and not role_allows(actor.role, Permission.MANAGE_TEAMS):
        raise PermissionDenied("Only the mailbox's owner or an admin can change this.")
    if team is not None and team.organization_id != actor.organization_id:
        raise PermissionDenied("not in this organization")
    if team is not None and not TeamMembership.objects.filter(team=team, membership_id=mailbox.owner_id).exists():
        raise ValidationError(f"The mailbox's owner must be in the team {team.name} first.")
    if mailbox.team_id == (team.pk if team is not None else None):
        return
    mailbox.team = team
    mailbox.save(update_fields=["team"])
    audit_record(
        action="mailbox.team_set", actor=actor.user, organization=actor.organization, request=request, target=mailbox,
        details={"team_id": team.pk if team else None},
    )  # fmt: skip
