"""Sealed attributes and encrypted blobs (SECURITY.md R44, R45)."""

from __future__ import annotations

import pytest

from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.core import blobs
from postroom.core.crypto import DecryptionError
from postroom.core.ids import uuid7
from postroom.core.keys import org_scope

CANARY = "CANARY-7f3e-sealed"


def test_uuid7_is_time_ordered_version_7() -> None:
    first, second = uuid7(), uuid7()
    assert first.version == 7
    assert first.variant == "specified in RFC 4122"
    assert first.int >> 80 <= second.int >> 80


@pytest.mark.django_db
def test_r44_sealed_attribute_round_trips_and_stores_ciphertext(cast: Cast) -> None:
    conversation = Conversation(organization=cast.org_a, last_message_at="2026-11-01T00:00:00Z")
    conversation.subject = f"Quarterly {CANARY}"
    conversation.save()
    stored = bytes(Conversation.objects.values_list("subject_sealed", flat=True).get(pk=conversation.pk))
    assert CANARY.encode() not in stored
    assert Conversation.objects.get(pk=conversation.pk).subject == f"Quarterly {CANARY}"


@pytest.mark.django_db
def test_r44_sealed_value_moved_to_another_row_does_not_decrypt(cast: Cast) -> None:
    first = Conversation(organization=cast.org_a, last_message_at="2026-11-01T00:00:00Z")
    first.subject = "first"
    first.save()
    second = Conversation(organization=cast.org_a, last_message_at="2026-11-01T00:00:00Z")
    second.subject = "second"
    second.save()
    Conversation.objects.filter(pk=second.pk).update(subject_sealed=first.subject_sealed)
    with pytest.raises(DecryptionError):
        _ = Conversation.objects.get(pk=second.pk).subject


@pytest.mark.django_db
def test_r45_blobs_are_encrypted_deduplicated_and_scoped(cast: Cast, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_DIR = tmp_path
    content = f"attachment body {CANARY}".encode()
    scope_a, scope_b = org_scope(cast.org_a.pk), org_scope(cast.org_b.pk)
    name = blobs.blob_put(scope_a, content)
    assert blobs.blob_put(scope_a, content) == name  # stored once
    assert blobs.blob_get(scope_a, name) == content
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert CANARY.encode() not in files[0].read_bytes()
    name_b = blobs.blob_put(scope_b, content)
    assert name_b != name  # names are keyed per organization
    assert not blobs.blob_exists(scope_b, name)
