"""System mail (verification, reset, invitations, security notices) goes out through a task.

The message is sealed with the system data key before it is queued: a reset link or an
invitation token must not sit in plaintext in the task table or in Redis.
"""

from __future__ import annotations

import json
import logging
import secrets

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django_tasks import task

from postroom.core.crypto import Field
from postroom.core.keys import SYSTEM_SCOPE, keyring

logger = logging.getLogger(__name__)


def _field(nonce: str) -> Field:
    return Field(table="task", column="system_mail", row=nonce)


def queue_system_mail(*, to: list[str], subject: str, text: str, html: str | None = None) -> None:
    """Queue one message after the current transaction commits (nothing is sent on rollback)."""
    payload = json.dumps({"to": to, "subject": subject, "text": text, "html": html}).encode()
    row = secrets.token_hex(8)
    sealed = keyring().encrypt(SYSTEM_SCOPE, _field(row), payload).hex()
    transaction.on_commit(lambda: send_system_mail.enqueue(row, sealed))


@task(queue_name="default")
def send_system_mail(row: str, sealed: str) -> None:
    message = json.loads(keyring().decrypt(SYSTEM_SCOPE, _field(row), bytes.fromhex(sealed)))
    email = EmailMultiAlternatives(subject=message["subject"], body=message["text"], to=message["to"])
    if message["html"]:
        email.attach_alternative(message["html"], "text/html")
    email.send()
    logger.info("system mail sent to %d recipient(s)", len(message["to"]))
