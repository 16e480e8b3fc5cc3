"""``core.bulk``'s prepared values are the ORM's own, for every field of the tables it writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection, models
from django.db.models.signals import post_init, pre_init

from postroom.contacts.models import MessageAddress
from postroom.conversations.models import Conversation, ConversationMember, Message, MessageCopy, MessageReference, Place
from postroom.core import bulk
from postroom.core.bulk import _preparer, as_uuid, model_instance, values_parameter
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


def _columns(instance: models.Model) -> dict[str, Any]:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


# Values for a row of each table whose instances ``model_instance`` builds, as their callers give them.
BUILT: list[tuple[type[models.Model], dict[str, Any]]] = [
    (Message, {"id": uuid.UUID(int=1), "organization_id": 3, "conversation_id": uuid.UUID(int=2), "direction": "outbound",
               "message_id_index": "m" * 64, "content_index": "c" * 64, "sent_at": SAMPLES[11], "size": 12, "raw_blob": "b" * 64,
               "quarantine_reason": "", "body_pending": True}),
    (MessageCopy, {"mailbox_id": uuid.UUID(int=4), "folder_id": 5, "uidvalidity": 7, "uid": 9, "message_id": uuid.UUID(int=1),
                   "modseq": None, "seen": True, "flagged": False, "answered": True}),
    (Conversation, {"id": uuid.UUID(int=2), "organization_id": 3, "subject_index": "s" * 64, "last_message_at": SAMPLES[12]}),
    (ConversationMember, {"conversation_id": uuid.UUID(int=2), "membership_id": 6, "organization_id": 3, "via_mailbox": True,
                          "via_share": False, "place": Place.INBOX, "copies_place": "", "copies_unread": False, "unread": True,
                          "last_activity_at": SAMPLES[11]}),
    (LiveEvent, {"organization_id": 3, "conversation_id": uuid.UUID(int=2), "kind": "message_added", "audience": [6],
                 "user_id": None, "created_at": SAMPLES[11]}),
]  # fmt: skip


@pytest.mark.parametrize(("model", "values"), BUILT)
def test_a_model_instance_is_the_one_the_model_builds(model: type[models.Model], values: dict[str, Any]) -> None:
    built, expected = model_instance(model, values), model(**values)
    assert type(built) is model
    assert _columns(built) == _columns(expected)
    assert (built._state.adding, built._state.db) == (expected._state.adding, expected._state.db) == (True, None)
    # Nothing else in the instance either, in the same order (built without Model.__init__).
    assert bulk._defaults[model][2] is not None
    assert [name for name in vars(built) if name != "_state"] == [name for name in vars(expected) if name != "_state"]
    # (ModelState makes its cache of related objects when first asked; a foreign key's __set__ asks.)
    assert (built._state.adding, built._state.db, built._state.fields_cache) == (True, None, {}) == (
        expected._state.adding, expected._state.db, expected._state.fields_cache)  # fmt: skip
    # Fields left out get their defaults; a callable default is called for each instance.
    bare = [model_instance(model, {}) for _ in range(2)]
    assert {name: value for name, value in _columns(bare[0]).items() if name != "id"} == {
        name: value for name, value in _columns(model()).items() if name != "id"
    }
    if isinstance(model._meta.pk, models.UUIDField):
        assert bare[0].pk != bare[1].pk
        assert bare[0].pk.version == 7


@pytest.mark.parametrize(("model", "values"), BUILT[:1])
def test_a_model_instance_goes_through_model_init_for_init_receivers(model: type[models.Model], values: dict[str, Any]) -> None:
    seen: list[tuple[str, Any]] = []

    def before(sender: Any, args: Any, kwargs: Any, **_: Any) -> None:
        seen.append(("pre", len(args)))

    def after(sender: Any, instance: Any, **_: Any) -> None:
        seen.append(("post", instance.pk))

    for signal, receiver in ((pre_init, before), (post_init, after)):
        signal.connect(receiver, sender=model)
        try:
            built = model_instance(model, values)
        finally:
            signal.disconnect(receiver, sender=model)
        assert _columns(built) == _columns(model(**values))
    assert seen == [("pre", len(model._meta.concrete_fields)), ("post", values["id"])]


def test_a_model_instance_refuses_what_is_not_a_column() -> None:
    with pytest.raises(TypeError, match="conversation"):
        model_instance(Message, {"conversation": None})


@pytest.mark.django_db
def test_values_parameter_selects_what_an_in_list_selects() -> None:
    """The one parameter of the constant look-ups carries every value through unchanged: strings
    (quotes included), integers and UUIDs (SQLite: a JSON array; PostgreSQL: an array)."""
    wanted: list[tuple[str, list[Any]]] = [
        ("text", ["a", "it's", "c"]),
        ("bigint", [1, 2**40]),
        ("uuid", [uuid.UUID(int=5), uuid.UUID("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]),
    ]
    # Beside a column the production texts need no cast; alone, PostgreSQL wants the array's type.
    statements = {
        "text": "SELECT unnest(%s::text[])",
        "bigint": "SELECT unnest(%s::bigint[])",
        "uuid": "SELECT unnest(%s::uuid[])",
    }
    for kind, values in wanted:
        statement = "SELECT value FROM json_each(%s)" if connection.vendor == "sqlite" else statements[kind]
        with connection.cursor() as cursor:
            cursor.execute(statement, [values_parameter(values)])
            found = [row[0] for row in cursor.fetchall()]
        if kind == "uuid":
            found = [as_uuid(value) for value in found]
        assert found == values
