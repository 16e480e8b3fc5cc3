"""Personal API tokens: creating, revoking and checking them (SECURITY.md R6, R23, R47, R54).

A token lets a script act as its member through the REST API, in every organization the member
belongs to (the URL names the organization; the member's role there is read on each request).

Attackers considered:
- someone who reads the database or a backup and would replay the tokens stored there;
- someone who guesses tokens, or holds one that was revoked, expired or belongs to a member who
  was deactivated;
- someone with a stolen session who wants access that outlives the session (creating a token
  is a login-credential change: it needs the password confirmed within five minutes, R6, and the
  member is told by email);
- anyone who reads logs, audit rows or API answers hoping to find a token there.

Defences:
- A token is ``pr_`` + 8 lowercase letters or digits (the *prefix*: public, unique, shown in
  the token list so a member can tell tokens apart) + 40 letters or digits from ``secrets``
  (238 bits). It is shown once, in the answer to the form that created it, and stored only as
  an HMAC-SHA256 keyed by a key derived from the server's secret key (``core.tokens``): a
  database dump holds no usable token. The row is found by its prefix and the HMACs are
  compared in constant time. Changing ``POSTROOM_SECRET_KEY`` therefore invalidates every token.
- Every request re-checks the row: revoked, expired or a deactivated account answers 401 with
  a message saying which. Scopes are *read* (GET/HEAD/OPTIONS only; anything else is 403 before
  an endpoint runs) and *write*.
- Audit rows name the token by its prefix, never the token. Log lines pass through
  ``core.logs.redact``, which cuts anything shaped like a token down to its prefix.
- The last use (time and client network, IPv4 /24 or IPv6 /48) is recorded at most once a
  minute per token, so reading the API does not write a row on every request.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from allauth.account.adapter import get_adapter as get_account_adapter
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone

from postroom.accounts.models import ApiToken, ApiTokenScope, User
from postroom.accounts.signals import audit_account_event
from postroom.core.http import client_ip
from postroom.core.tokens import token_hash, token_matches

TOKEN_PURPOSE = "api_token"  # noqa: S105 (names the HMAC, not a secret)
PREFIX_START = "pr_"
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 8
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40
TOKEN_PATTERN = re.compile(rf"^{PREFIX_START}[a-z0-9]{{{PREFIX_LENGTH}}}[A-Za-z0-9]{{{SECRET_LENGTH}}}$")
LAST_USED_EVERY = timedelta(minutes=1)
MAX_TOKENS_PER_USER = 50


class ApiTokenRefusedError(Exception):
    """The presented token cannot be used; the message says why and is safe to show."""


@dataclass(frozen=True)
class NewApiToken:
    row: ApiToken
    token: str  # the only time the token exists outside its holder's hands


def _new_prefix() -> str:
    return PREFIX_START + "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


def _new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def client_network(request: HttpRequest) -> str:
    """The client's network as shown to the token's owner: IPv4 /24, IPv6 /48."""
    address = client_ip(request)
    if address is None:
        return ""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    prefix = 24 if isinstance(parsed, ipaddress.IPv4Address) else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


# --- reads -----------------------------------------------------------------------------------------
def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    """The member's tokens, newest first, revoked and expired ones included (shown as such)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_tokens_active(*, user: User) -> QuerySet[ApiToken]:
    return api_tokens_of(user=user).filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))


def api_token_get(*, user: User, token_id: int) -> ApiToken:
    token = api_tokens_of(user=user).filter(pk=token_id).first()
    if token is None:
        raise Http404
    return token


# --- writes ----------------------------------------------------------------------------------------
@transaction.atomic
def api_token_create(*, user: User, name: str, scope: str, expires_at: datetime | None, request: HttpRequest | None = None) -> NewApiToken:
    """Create a token for ``user``. The caller has had the password confirmed (R6). With a
    request (the settings page), the member is told by email (R7)."""
    name = " ".join(name.split())
    if not name:
        raise ValidationError({"name": "Give the token a name, so that you can recognise it later."})
    if scope not in ApiTokenScope.values:
        raise ValidationError({"scope": "Choose read or write."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Choose a time in the future."})
    if api_tokens_active(user=user).count() >= MAX_TOKENS_PER_USER:
        raise ValidationError(f"You have {MAX_TOKENS_PER_USER} tokens already: revoke one you no longer use first.")
    secret = _new_secret()
    row, token = _insert_with_free_prefix(user=user, name=name[:80], scope=scope, expires_at=expires_at, secret=secret)
    audit_account_event(
        "auth.api_token_created",
        user=user,
        actor=user,
        request=request,
        details={"prefix": row.prefix, "scope": scope, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    if request is not None:
        # Made now: allauth's adapter takes the request from a context that ends with the request,
        # and on-commit callbacks can run after that.
        adapter = get_account_adapter(request)
        context = {"token_name": row.name, "token_prefix": row.prefix, "token_scope": row.get_scope_display()}
        transaction.on_commit(lambda: adapter.send_notification_mail("accounts/email/api_token_created", user, context))
    return NewApiToken(row=row, token=token)


def _insert_with_free_prefix(*, user: User, name: str, scope: str, expires_at: datetime | None, secret: str) -> tuple[ApiToken, str]:
    for _attempt in range(5):
        token = _new_prefix() + secret
        try:
            with transaction.atomic():
                row = ApiToken.objects.create(
                    user=user,
                    name=name,
                    prefix=token[: len(PREFIX_START) + PREFIX_LENGTH],
                    token_hash=token_hash(TOKEN_PURPOSE, token),
                    scope=scope,
                    expires_at=expires_at,
                )
        except IntegrityError:
            continue  # the prefix was taken (about one chance in 10^12 per existing token)
        return row, token
    raise RuntimeError("could not find a free API token prefix")


def api_token_revoke(*, user: User, token: ApiToken, request: HttpRequest | None = None) -> ApiToken:
    """Revoke one of ``user``'s tokens; it stops working on its very next request."""
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().filter(pk=token.pk, user=user).first()
        if locked is None:
            raise Http404
        if locked.revoked_at is not None:
            raise ValidationError("This token was already revoked.")
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit_account_event("auth.api_token_revoked", user=user, actor=user, request=request, details={"prefix": locked.prefix})
    return locked


# --- checking a presented token --------------------------------------------------------------------
def api_token_authenticate(*, presented: str, request: HttpRequest) -> ApiToken:
    """The active token ``presented`` is, with its user; ``ApiTokenRefusedError`` otherwise."""
    if not TOKEN_PATTERN.match(presented):
        raise ApiTokenRefusedError("This is not a Postroom API token: send the whole token, as shown when it was created.")
    prefix = presented[: len(PREFIX_START) + PREFIX_LENGTH]
    row = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    # Unknown and wrong tokens get the same answer; the HMAC is computed either way.
    matches = token_matches(TOKEN_PURPOSE, presented, row.token_hash if row is not None else "0" * 64)
    if row is None or not matches:
        raise ApiTokenRefusedError("This API token is not valid.")
    now = timezone.now()
    if row.revoked_at is not None:
        raise ApiTokenRefusedError("This API token was revoked.")
    if row.is_expired(now):
        raise ApiTokenRefusedError(f"This API token expired on {row.expires_at:%Y-%m-%d %H:%M} UTC.")
    if not row.user.is_active:
        raise ApiTokenRefusedError("The account of this API token is deactivated.")
    _record_use(row, request, now)
    return row


def _record_use(row: ApiToken, request: HttpRequest, now: datetime) -> None:
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_EVERY:
        return
    network = client_network(request)
    # Conditional, so that parallel requests write once.
    ApiToken.objects.filter(pk=row.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_EVERY)).update(
        last_used_at=now, last_used_network=network
    )
    row.last_used_at, row.last_used_network = now, network


def api_token_allows(token: ApiToken, method: str) -> None:
    """A read token may only read; anything else is refused before an endpoint runs."""
    if token.scope != ApiTokenScope.WRITE and method not in ("GET", "HEAD", "OPTIONS"):
        raise PermissionDenied("This API token can only read (its scope is read). Create a token with the write scope to make changes.")
