"""Writes done on behalf of a member: for now, the audit trail of downloads.

Audit details never carry content (file names, subjects): the audit table is not encrypted.
"""

from __future__ import annotations

from django.http import HttpRequest

from postroom.audit.actions import audit_record
from postroom.conversations.models import Attachment, Message
from postroom.orgs.models import Membership


def attachment_download_record(*, actor: Membership, attachment: Attachment, request: HttpRequest) -> None:
    audit_record(
        action="message.attachment_downloaded", actor=actor.user, organization=actor.organization, request=request,
        target=attachment, details={"message_id": str(attachment.message_id), "size": attachment.size},
    )  # fmt: skip


def raw_message_download_record(*, actor: Membership, message: Message, request: HttpRequest) -> None:
    audit_record(
        action="message.raw_downloaded", actor=actor.user, organization=actor.organization, request=request,
        target=message, details={"quarantine_reason": message.quarantine_reason},
    )  # fmt: skip
