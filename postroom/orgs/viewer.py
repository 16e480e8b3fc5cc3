"""Who is asking: a user's memberships and second factor, read once per request.

Every page needs the same three facts about the signed-in user: whether an organization they
belong to requires two-factor authentication and whether they have a second factor
(``RequireTwoFactorMiddleware``), their membership of the organization the URL names
(``membership_get``), and all their organizations (the sidebar, the bell). Read separately,
through the ORM, that was three built queries on every page (issue #4). ``ViewerMiddleware``
opens a snapshot for the request; the first of those asks reads one constant text (SECURITY.md
R58) and the others answer from it.

What keeps it correct:

- The snapshot lives only as long as its request (a context variable set and reset around
  it): nothing is remembered between requests. Outside a request (a task, the sync service, a
  stream that outlives its request) every ask reads the database again, with the same query.
- It holds rows, not instances: each caller gets new ``Membership`` and ``Organization``
  instances, so a view that changes its own copy changes nobody else's.
- A write to a membership, an organization or an authenticator in this process (its
  ``post_save`` and ``post_delete``) makes every open snapshot read again on its next use, so a
  request that changes a role, leaves an organization or adds a second factor sees the change
  in the rest of that same request. A write by another process during a request is seen by
  the next request, as with any read made at the request's start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from allauth.mfa.models import Authenticator
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse

from postroom.accounts.models import User
from postroom.core.rows import builder
from postroom.orgs.models import Membership, Organization

# A recovery-code set alone is not a second factor: it comes with, and backs up, one of these.
SECOND_FACTOR_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)

# The user's memberships with their organizations, by organization name (as ``memberships_of``),
# and whether the user has a second factor: the EXISTS is on every row, and a user without a
# membership needs no answer (no organization requires anything of them).
_VIEWER_SQL = """
SELECT p.id, p.organization_id, p.user_id, p.role, p.created_at,
       o.id, o.name, o.slug, o.require_two_factor, o.created_at,
       EXISTS (SELECT 1 FROM mfa_authenticator a WHERE a.user_id = p.user_id AND a.type IN (%(first)s, %(second)s))
FROM orgs_membership p INNER JOIN orgs_organization o ON o.id = p.organization_id
WHERE p.user_id = %(user)s
ORDER BY o.name, p.id
"""
_MEMBERSHIP_COLUMNS = ("id", "organization_id", "user_id", "role", "created_at")
_ORGANIZATION_COLUMNS = ("id", "name", "slug", "require_two_factor", "created_at")
_REQUIRE_TWO_FACTOR = len(_MEMBERSHIP_COLUMNS) + _ORGANIZATION_COLUMNS.index("require_two_factor")

# Bumped by every write that could change a snapshot's answer, under its lock (two writers must
# not both store the same next value while a reader holds the one before).
_writes = [0]
_writes_lock = threading.Lock()


def _written(**kwargs: Any) -> None:
    with _writes_lock:
        _writes[0] += 1


@dataclass
class _Read:
    generation: int
    rows: list[tuple[Any, ...]]
    two_factor: bool


@dataclass
class _Snapshot:
    reads: dict[Any, _Read] = field(default_factory=dict)

    def read(self, user_id: Any) -> _Read:
        generation = _writes[0]
        known = self.reads.get(user_id)
        if known is None or known.generation != generation:
            with connection.cursor() as cursor:
                cursor.execute(_VIEWER_SQL, {"user": user_id, "first": SECOND_FACTOR_TYPES[0].value, "second": SECOND_FACTOR_TYPES[1].value})
                rows = [tuple(row) for row in cursor.fetchall()]
            known = _Read(generation, rows, two_factor=bool(rows and rows[0][-1]))
            self.reads[user_id] = known
        return known


_current: ContextVar[_Snapshot | None] = ContextVar("postroom_viewer", default=None)


def _build(read: _Read, user: User) -> list[Membership]:
    membership_of, organization_of = builder(Membership, _MEMBERSHIP_COLUMNS), builder(Organization, _ORGANIZATION_COLUMNS)
    split = len(_MEMBERSHIP_COLUMNS)
    memberships = []
    for row in read.rows:
        membership = membership_of(row[:split])
        membership.organization = organization_of(row[split : split + len(_ORGANIZATION_COLUMNS)])
        membership.user = user
        memberships.append(membership)
    return memberships


def _read(user: User | AnonymousUser) -> _Read | None:
    if not user.is_authenticated:
        return None
    snapshot = _current.get()
    # Outside a request (tasks, the sync service, a stream after its request): read now, keep nothing.
    return (snapshot or _Snapshot()).read(user.pk)


def memberships(user: User | AnonymousUser) -> list[Membership]:
    """The user's memberships (with organization and user), by organization name: from the
    request's snapshot, or read now outside a request; none for an anonymous user."""
    read = _read(user)
    return [] if read is None else _build(read, user)  # type: ignore[arg-type]  # authenticated: a User


def two_factor_required_and_missing(user: User | AnonymousUser) -> bool:
    """Whether an organization of the user's requires a second factor that the user has not got."""
    read = _read(user)
    if read is None:
        return False
    required = any(row[_REQUIRE_TWO_FACTOR] for row in read.rows)
    return required and not read.two_factor


class ViewerMiddleware:
    """Opens the request's snapshot (see the module docstring) and closes it at the end."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current.set(_Snapshot())
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def connect() -> None:
    for model in (Membership, Organization, Authenticator):
        post_save.connect(_written, sender=model, dispatch_uid=f"postroom.orgs.viewer.saved.{model.__name__}")
        post_delete.connect(_written, sender=model, dispatch_uid=f"postroom.orgs.viewer.deleted.{model.__name__}")
