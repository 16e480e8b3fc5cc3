"""``core.bulk``'s prepared values are the ORM's own, for every field of the tables it writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection, models

from postroom.contacts.models import MessageAddress
from postroom.conversations.models import Conversation, ConversationMember, Message, MessageCopy, MessageReference, Place
from postroom.core.bulk import _preparer
from postroom.live.models import LiveEvent

SAMPLES: list[Any] = [
    None,
    "",
    "text",
    "7",
    Place.INBOX,
    True,
    False,
    0,
    7,
    2**40,
    uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
    datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
    datetime(2025, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-7))),
    b"\x00sealed",
    memoryview(b"view"),
]


def _outcome(function: Any, value: Any) -> Any:
    try:
        result = function(value)
    except Exception as error:
        return ("raised", type(error))
    return _comparable(result)


def _comparable(result: Any) -> Any:
    if isinstance(result, memoryview | bytes | bytearray):
        return ("bytes", type(result), bytes(result))
    if hasattr(result, "obj"):  # psycopg's wrappers (Binary), which do not compare their contents
        return ("wrapped", type(result), _comparable(result.obj))
    return ("value", type(result), result)


@pytest.mark.parametrize("model", [Message, MessageCopy, Conversation, MessageReference, MessageAddress, ConversationMember, LiveEvent])
def test_prepared_values_are_the_fields_own(model: type[models.Model]) -> None:
    checked = 0
    for field in model._meta.local_concrete_fields:
        prepare = _preparer(field, connection)
        for value in SAMPLES:
            expected = _outcome(lambda value, field=field: field.get_db_prep_save(value, connection), value)
            assert _outcome(prepare, value) == expected, (field.name, value)
            checked += 1
    assert checked >= len(SAMPLES) * 3
