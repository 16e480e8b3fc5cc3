"""Which sync service syncs which mailbox: leases in the database.

Two services syncing one mailbox would race on the folder state and could each push a member's
action to the server twice, so each mailbox is held by at most one service at a time. A service
takes a mailbox with one conditional UPDATE (the row changes only if the lease is free, expired
or already its own), which the database serialises on every backend (a row lock on PostgreSQL,
the write lock on SQLite): of two services racing, exactly one sees "1 row". The holder renews
well before expiry; a service that dies stops renewing, and its mailboxes become free
``LEASE_SECONDS`` later, so another takes them over within a minute.

A service that cannot renew in time (stalled, partitioned from the database) must stop working
on the mailbox: ``lease_renew`` tells it which leases it still holds. The window in which a
stalled holder and the new one overlap is harmless for stored mail, because storing is
idempotent per (folder, UIDVALIDITY, UID).

Times are this process's clock: services on several machines need synchronised clocks (NTP),
with skew far below the lease length.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from postroom.mailboxes.models import SYNCABLE_STATUSES, Mailbox

LEASE_SECONDS = 60
# Only these are synced: a mailbox that needs new credentials or is paused waits for a member.


def service_identity() -> str:
    """A name for this service process, unique across machines and restarts."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def _claimable(owner: str) -> Q:
    return Q(lease_owner="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=timezone.now()) | Q(lease_owner=owner)


def lease_claim(owner: str, *, limit: int, lease_seconds: float = LEASE_SECONDS) -> list[uuid.UUID]:
    """Take up to ``limit`` free or expired mailboxes for ``owner``; the ids it now holds."""
    if limit <= 0:
        return []
    candidates = list(
        Mailbox.objects.filter(_claimable(owner), status__in=SYNCABLE_STATUSES)
        .exclude(lease_owner=owner)
        .order_by("lease_expires_at", "id")
        .values_list("id", flat=True)[: limit * 2]
    )
    claimed: list[uuid.UUID] = []
    for mailbox_id in candidates:
        if len(claimed) >= limit:
            break
        # The condition is evaluated again inside the UPDATE: whoever updates first wins, the
        # other's UPDATE matches no row.
        taken = Mailbox.objects.filter(_claimable(owner), id=mailbox_id, status__in=SYNCABLE_STATUSES).update(
            lease_owner=owner, lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds)
        )
        if taken:
            claimed.append(mailbox_id)
    return claimed


def lease_renew(owner: str, mailbox_ids: Iterable[uuid.UUID], *, lease_seconds: float = LEASE_SECONDS) -> set[uuid.UUID]:
    """Extend ``owner``'s leases; the ids it still holds (a lost one must be given up at once)."""
    ids = list(mailbox_ids)
    if not ids:
        return set()
    Mailbox.objects.filter(id__in=ids, lease_owner=owner).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds))
    return set(Mailbox.objects.filter(id__in=ids, lease_owner=owner, status__in=SYNCABLE_STATUSES).values_list("id", flat=True))


def lease_release(owner: str, mailbox_ids: Iterable[uuid.UUID] | None = None) -> int:
    """Give leases back on a clean stop, so another service need not wait for them to expire."""
    held = Mailbox.objects.filter(lease_owner=owner)
    if mailbox_ids is not None:
        held = held.filter(id__in=list(mailbox_ids))
    return held.update(lease_owner="", lease_expires_at=None)
