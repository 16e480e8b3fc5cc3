"""The reads behind every delivery: who may still receive what, asked for many streams at once.

Attacker: a member who keeps a page open to learn about conversations they cannot see (another
member's private mail, a team they are not in, another organization), or who keeps receiving
after their session ended (logout, password or second-factor change, removal from the
organization). Defences: each event is checked at delivery time against ``ConversationMember``,
the one source of visibility every other read uses (``conversations.access``), in one query for
all the streams of a web process; and every stream's session is checked again, in one batch,
with the same rules as a request (``django.contrib.auth``'s session hash, which covers the
password and the security stamp, the idle expiry of the session row, the absolute lifetime of
``accounts.middleware``, an active user, the membership).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from postroom.accounts.middleware import LOGIN_AT
from postroom.accounts.models import User
from postroom.conversations.models import ConversationMember
from postroom.orgs.models import Membership


def visible_pairs(*, conversation_ids: Iterable[uuid.UUID], membership_ids: Iterable[int]) -> set[tuple[uuid.UUID, int]]:
    """The (conversation, membership) pairs among these where the member can see the conversation now."""
    conversations, members = set(conversation_ids), set(membership_ids)
    if not conversations or not members:
        return set()
    rows = ConversationMember.objects.filter(conversation_id__in=conversations, membership_id__in=members)
    return set(rows.values_list("conversation_id", "membership_id"))


@dataclass(frozen=True)
class StreamGrant:
    """What a stream was opened with: the session, its user, and the membership it streams for."""

    session_key: str
    user_id: int
    membership_id: int


def _login_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else None


def grants_still_valid(grants: Iterable[StreamGrant]) -> set[StreamGrant]:
    """The grants whose session would still be let in, for the same user and membership."""
    grants = set(grants)
    if not grants:
        return set()
    now = timezone.now()
    sessions = dict(
        Session.objects.filter(session_key__in={grant.session_key for grant in grants}, expire_date__gt=now).values_list(
            "session_key", "session_data"
        )
    )
    users = {user.pk: user for user in User.objects.filter(pk__in={grant.user_id for grant in grants}, is_active=True)}
    memberships = set(Membership.objects.filter(pk__in={grant.membership_id for grant in grants}).values_list("pk", "user_id"))
    decoder = SessionStore()
    valid = set()
    for grant in grants:
        data = sessions.get(grant.session_key)
        user = users.get(grant.user_id)
        if data is None or user is None or (grant.membership_id, grant.user_id) not in memberships:
            continue
        session = decoder.decode(data)
        if str(session.get(SESSION_KEY)) != str(user.pk):
            continue
        if not constant_time_compare(str(session.get(HASH_SESSION_KEY, "")), user.get_session_auth_hash()):
            continue
        login_at = _login_time(session.get(LOGIN_AT))
        if login_at is None or now - login_at > settings.SESSION_ABSOLUTE_LIFETIME:
            continue
        valid.add(grant)
    return valid
