"""Reads for remote images: whose images a member always shows, and who a capability URL names."""

from __future__ import annotations

from postroom.conversations.models import Message
from postroom.core.keys import keyring
from postroom.imageproxy.models import TrustedImageSender
from postroom.orgs.models import Membership

SENDER_PURPOSE = "image-sender"


def sender_address(*, message: Message) -> str | None:
    """The message's first From address, lower-cased; None when it has none."""
    senders = (message.addresses or {}).get("from") or []
    for pair in senders:
        if len(pair) == 2 and pair[1] and "@" in pair[1]:
            return str(pair[1]).strip().lower()
    return None


def sender_index(*, message: Message) -> str | None:
    """Blind index of the message's sender, the key of a member's "always show" choice."""
    address = sender_address(message=message)
    return keyring().blind_index(message.key_scope(), SENDER_PURPOSE, address) if address else None


def trusted_sender_indexes(*, actor: Membership) -> frozenset[str]:
    """Every sender whose images ``actor`` always shows: one query for a whole page."""
    return frozenset(
        TrustedImageSender.objects.filter(membership=actor, organization_id=actor.organization_id).values_list("sender_index", flat=True)
    )


def membership_for_link(*, membership_id: int, slug: str) -> Membership | None:
    """The member a capability URL was made for, if still a member of ``slug`` and active."""
    return (
        Membership.objects.select_related("organization", "user")
        .filter(pk=membership_id, organization__slug=slug, user__is_active=True)
        .first()
    )
