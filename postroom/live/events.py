"""What travels on the live bus and down an event stream: ids and a kind, never content.

An ``Event`` is either about a conversation (``conversation_id``, ``organization_id``, ``kind``,
optionally an ``audience`` of membership ids) or a control event for the web processes
(``user_id``: re-check that user's open streams at once, e.g. after a logout or a password
change). ``sequence`` orders events inside one web process; on the database bus it is the row id,
which is what makes resuming after a reconnect possible.

The stream sends each event as ``event: conversation`` with ``{"conversation": id, "kind": kind}``.
Its ``id:`` field is an opaque cursor: the position encrypted (AES-GCM, key derived from the
secret key, bound to the user and the organization), because the plain row id would tell every member how much
happens elsewhere on the server — in other members' private mail and in other organizations.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.utils.crypto import salted_hmac

KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")
CONTROL_KIND = "session"


class InvalidEventError(ValueError):
    """An event that must not be published (a malformed kind or id)."""


@dataclass(frozen=True)
class Event:
    kind: str
    organization_id: int | None = None
    conversation_id: uuid.UUID | None = None
    audience: frozenset[int] | None = None
    user_id: int | None = None
    sequence: int = field(default=0, compare=False)

    @property
    def is_control(self) -> bool:
        return self.user_id is not None

    def with_sequence(self, sequence: int) -> Event:
        return Event(self.kind, self.organization_id, self.conversation_id, self.audience, self.user_id, sequence)

    def to_wire(self) -> bytes:
        """The compact JSON the Redis bus carries between processes."""
        payload: dict[str, Any] = {"k": self.kind}
        if self.user_id is not None:
            payload["u"] = self.user_id
        else:
            payload["o"] = self.organization_id
            payload["c"] = str(self.conversation_id)
            if self.audience is not None:
                payload["a"] = sorted(self.audience)
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def from_wire(cls, data: bytes | str) -> Event:
        """Parse what another process published; anything malformed raises ``InvalidEventError``."""
        try:
            payload = json.loads(data)
            if "u" in payload:
                return control_event(int(payload["u"]))
            audience = payload.get("a")
            return conversation_event(
                organization_id=int(payload["o"]),
                conversation_id=payload["c"],
                kind=str(payload["k"]),
                audience=None if audience is None else [int(item) for item in audience],
            )
        except (ValueError, TypeError, KeyError) as error:
            raise InvalidEventError(f"malformed live event: {type(error).__name__}") from None


def conversation_event(*, organization_id: int, conversation_id: Any, kind: str, audience: Any = None) -> Event:
    if not KIND.fullmatch(kind):
        raise InvalidEventError("a kind is lowercase letters, digits and underscores")
    try:
        conversation = conversation_id if isinstance(conversation_id, uuid.UUID) else uuid.UUID(str(conversation_id))
    except ValueError:
        raise InvalidEventError("a conversation id is a UUID") from None
    members = None if audience is None else frozenset(int(item) for item in audience)
    return Event(kind=kind, organization_id=int(organization_id), conversation_id=conversation, audience=members)


def control_event(user_id: int) -> Event:
    return Event(kind=CONTROL_KIND, user_id=int(user_id))


# --- The stream's wire format ----------------------------------------------------------------------
def sse_message(*, event: str, data: dict[str, Any], cursor: str | None = None) -> str:
    lines = []
    if cursor is not None:
        lines.append(f"id: {cursor}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def sse_payload(event: Event) -> dict[str, Any]:
    return {"conversation": str(event.conversation_id), "kind": event.kind}


# --- Cursors (the Last-Event-ID) -------------------------------------------------------------------
_CURSOR_AAD = "postroom.live.cursor:{}"
_NONCE = 12


def _cursor_key() -> bytes:
    return salted_hmac("postroom.live.cursor", "key", algorithm="sha256").digest()


def cursor_encode(sequence: int, *, user_id: int, organization_id: int) -> str:
    nonce = secrets.token_bytes(_NONCE)
    sealed = AESGCM(_cursor_key()).encrypt(nonce, struct.pack(">Q", sequence), _CURSOR_AAD.format(f"{user_id}:{organization_id}").encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def cursor_decode(token: str, *, user_id: int, organization_id: int) -> int | None:
    """The position a stream of this user in this organization reached, or None for anything else."""
    if not token or len(token) > 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        plain = AESGCM(_cursor_key()).decrypt(raw[:_NONCE], raw[_NONCE:], _CURSOR_AAD.format(f"{user_id}:{organization_id}").encode())
        (sequence,) = struct.unpack(">Q", plain)
    except (ValueError, InvalidTag, struct.error):
        return None
    return int(sequence)
