"""Writes for remote images: a member's "always show images from this sender" and its undoing.

The member names a message they can see (the conversations selectors decide, 404 otherwise),
never an address: the sender is taken from that message and kept only as a blind index. The
audit event says that the choice was made, for which message, and never names the sender.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest

from postroom.audit.actions import audit_record
from postroom.conversations import selectors as conversation_selectors
from postroom.conversations.models import Message
from postroom.imageproxy import selectors
from postroom.imageproxy.models import TrustedImageSender
from postroom.orgs.models import Membership


class NoSenderError(ValueError):
    """The message has no sender address to remember."""


def image_sender_trust(*, actor: Membership, message: Message, request: HttpRequest | None = None) -> bool:
    """Always show remote images from the sender of ``message``; False if already chosen."""
    visible = conversation_selectors.message_get(actor=actor, message_id=str(message.pk))
    index = selectors.sender_index(message=visible)
    if index is None:
        raise NoSenderError("This message has no sender address.")
    with transaction.atomic():
        _choice, created = TrustedImageSender.objects.get_or_create(
            organization_id=actor.organization_id, membership=actor, sender_index=index
        )
        if created:
            audit_record(
                action="images.sender_trusted", actor=actor.user, organization=actor.organization, request=request, target=visible,
            )  # fmt: skip
    return created


def image_sender_distrust(*, actor: Membership, message: Message, request: HttpRequest | None = None) -> bool:
    """Ask again before showing images from the sender of ``message``; False if nothing changed."""
    visible = conversation_selectors.message_get(actor=actor, message_id=str(message.pk))
    index = selectors.sender_index(message=visible)
    if index is None:
        return False
    with transaction.atomic():
        deleted, _ = TrustedImageSender.objects.filter(membership=actor, sender_index=index).delete()
        if deleted:
            audit_record(
                action="images.sender_untrusted", actor=actor.user, organization=actor.organization, request=request, target=visible,
            )  # fmt: skip
    return bool(deleted)
