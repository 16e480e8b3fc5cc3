"""Throttling of online guessing at sign-in (SECURITY.md R4).

Attacker: someone guessing a password, a TOTP code or a recovery code over the network — from
one machine or from a botnet of many addresses, with a fresh session and fresh cookies for every
try, claiming other addresses in ``X-Forwarded-For``, and firing requests in parallel.

Defences:

- Every failed password, TOTP or recovery-code attempt counts, all together, against two keys:
  the account (the user; or, when no account has the typed address, the typed address itself,
  so unknown addresses behave exactly like known ones — no enumeration through the throttle)
  and the client's network (``core.http.client_ip``, which trusts ``X-Forwarded-For`` only for
  the configured proxy hops; an IPv6 client counts as its /64, which one subscriber usually
  controls in full). New sessions, new codes or new cookies change neither key.
- Progressive delay: the first ``free_failures`` consecutive failures of a key cost nothing;
  after that an attempt is refused until ``2^(n - free_failures)`` seconds (at most 15 minutes)
  have passed since the last failure. Refused attempts are not checked and do not count.
- Hard stop: after 100 consecutive failures of an account key, nothing more is checked for it
  until a successful sign-in, a password reset through the emailed link (which proves control
  of the mailbox), or an operator runs ``postroom manage unlock_account <email>``.
- Network keys start delaying after 50 failures and forget them after an hour without one. A
  success does not reset them, so an attacker cannot launder a network's count with an account
  of their own.
- Counters live in the database, so every web process and worker shares them; the check and
  the count happen under a row lock (on SQLite, the write lock that our IMMEDIATE transactions
  take at BEGIN), and each attempt is counted *before* the password or code
  is checked (a "reservation", given back only when it turns out right), so parallel requests
  cannot share one free slot and a crash never yields an uncounted guess.
- Only a complete sign-in resets the account's counters (allauth's ``user_logged_in``, sent
  after every step and factor): a right password followed by a wrong second factor is not a
  success, so someone who knows the password cannot refill the TOTP and recovery-code budget.

Lockout (denial of service) policy: the account key is what a stranger can drive, so it must
not lock the owner out. Attempts from a network where the account has signed in successfully in
the last 180 days are counted under their own key (account + that network) instead of the
account-wide one. A botnet hammering an account exhausts the budget of unknown networks only;
the owner keeps signing in from home or work, and each success resets the account's counters.
Someone who shares the owner's network gets that network's own budget of 100, still under the
network key. An owner refused everywhere can reset the password by email, which clears the
account's counters.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from postroom.accounts.models import KnownLoginNetwork, LoginThrottle, User
from postroom.core.http import client_ip

MAXIMUM_DELAY = timedelta(minutes=15)
KNOWN_NETWORK_LIFETIME = timedelta(days=180)


@dataclass(frozen=True)
class Policy:
    free_failures: int
    hard_stop: int | None
    forget_after: timedelta | None


ACCOUNT_POLICY = Policy(free_failures=10, hard_stop=100, forget_after=None)
NETWORK_POLICY = Policy(free_failures=50, hard_stop=None, forget_after=timedelta(hours=1))


class AttemptRefusedError(Exception):
    """Too many recent failures: the attempt was refused without checking anything."""


@dataclass(frozen=True)
class ThrottleKey:
    digest: str
    policy: Policy
    user: User | None = None


def _digest(kind: str, value: str) -> str:
    return salted_hmac("postroom.accounts.throttle", f"{kind}:{value}", algorithm="sha256").hexdigest()


def client_network(request: HttpRequest) -> str:
    """The address that counts for throttling: the IPv4 address, or the IPv6 /64."""
    address = client_ip(request)
    if address is None:
        return "unknown"
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(parsed)


def _network_key_digest(network: str) -> str:
    return _digest("network", network)


def _is_known_network(user: User, network: str, now: datetime) -> bool:
    return KnownLoginNetwork.objects.filter(
        user=user, network_key=_network_key_digest(network), last_login_at__gte=now - KNOWN_NETWORK_LIFETIME
    ).exists()


def throttle_keys(request: HttpRequest, *, user: User | None, login: str, now: datetime) -> list[ThrottleKey]:
    network = client_network(request)
    keys = [ThrottleKey(_network_key_digest(network), NETWORK_POLICY)]
    if user is None:
        keys.append(ThrottleKey(_digest("login", login.strip().lower()), ACCOUNT_POLICY))
    elif _is_known_network(user, network, now):
        keys.append(ThrottleKey(_digest("account-network", f"{user.pk}|{network}"), ACCOUNT_POLICY, user))
    else:
        keys.append(ThrottleKey(_digest("account", str(user.pk)), ACCOUNT_POLICY, user))
    return keys


def is_refused(*, failures: int, last_failure_at: datetime | None, policy: Policy, now: datetime) -> bool:
    if policy.hard_stop is not None and failures >= policy.hard_stop:
        return True
    if failures < policy.free_failures or last_failure_at is None:
        return False
    delay = timedelta(seconds=2 ** min(failures - policy.free_failures, 20))
    return now < last_failure_at + min(delay, MAXIMUM_DELAY)


@dataclass
class Reservation:
    """One attempt, counted as a failure until ``release`` says it was right."""

    rows: list[tuple[int, datetime | None]] = field(default_factory=list)
    counted_at: datetime | None = None

    def release(self) -> None:
        for row_id, previous_failure_at in self.rows:
            # Give back this attempt's count; restore the timestamp only if no later failure
            # has replaced it meanwhile, so the right password does not start a delay.
            LoginThrottle.objects.filter(pk=row_id, failures__gt=0).update(failures=F("failures") - 1)
            LoginThrottle.objects.filter(pk=row_id, last_failure_at=self.counted_at).update(last_failure_at=previous_failure_at)
        self.rows = []


def attempt_reserve(request: HttpRequest, *, user: User | None, login: str = "") -> Reservation:
    """Count one attempt for the account and the client network, or refuse it.

    Raises ``AttemptRefusedError`` while any key is in its delay or hard stop.
    """
    now = timezone.now()
    keys = sorted(throttle_keys(request, user=user, login=login, now=now), key=lambda key: key.digest)
    reservation = Reservation(counted_at=now)
    with transaction.atomic():
        rows = []
        for key in keys:
            LoginThrottle.objects.get_or_create(key=key.digest, defaults={"user": key.user})
            row = LoginThrottle.objects.select_for_update().get(key=key.digest)
            if key.policy.forget_after and row.last_failure_at and now - row.last_failure_at > key.policy.forget_after:
                row.failures = 0
            if is_refused(failures=row.failures, last_failure_at=row.last_failure_at, policy=key.policy, now=now):
                raise AttemptRefusedError
            rows.append(row)
        for row in rows:
            reservation.rows.append((row.pk, row.last_failure_at))
            row.failures += 1
            row.last_failure_at = now
            row.save(update_fields=["failures", "last_failure_at"])
    return reservation


def login_succeeded(request: HttpRequest, *, user: User) -> None:
    """A complete sign-in: reset the account's counters and remember the network."""
    now = timezone.now()
    network_key = _network_key_digest(client_network(request))
    LoginThrottle.objects.filter(user=user).update(failures=0, last_failure_at=None)
    updated = KnownLoginNetwork.objects.filter(user=user, network_key=network_key).update(last_login_at=now)
    if not updated:
        try:
            with transaction.atomic():
                KnownLoginNetwork.objects.create(user=user, network_key=network_key, last_login_at=now)
        except IntegrityError:
            pass  # a parallel sign-in from the same network recorded it first


def account_throttle_clear(*, user: User, reason: str, request: HttpRequest | None = None) -> None:
    """Lift the account's delays and hard stop (password reset by email, or an operator)."""
    from postroom.accounts.signals import audit_account_event

    with transaction.atomic():
        cleared = LoginThrottle.objects.filter(user=user, failures__gt=0).update(failures=0, last_failure_at=None)
        if cleared:
            audit_account_event("auth.throttle_cleared", user=user, request=request, details={"reason": reason})
