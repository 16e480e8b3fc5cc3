"""SECURITY.md R44 (envelope AES-256-GCM) and R46 (key management)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postroom.core import crypto, keys
from postroom.core.keyfiles import MasterKey, load_master_keys, new_master_key_line, parse_master_keys
from postroom.core.models import DataKey

FIELD = crypto.Field(table="message", column="subject", row="42")
KEY = b"k" * 32


@given(st.binary(max_size=2048))
@settings(max_examples=60)
def test_r44_round_trip(plaintext: bytes) -> None:
    value = crypto.encrypt_with(KEY, plaintext, scope="org:1", version=1, field=FIELD)
    if len(plaintext) >= 16:  # a few random bytes can occur in any ciphertext by chance
        assert plaintext not in value
    assert crypto.decrypt_with(KEY, value, scope="org:1", field=FIELD) == plaintext


def test_r44_every_flipped_bit_fails() -> None:
    value = crypto.encrypt_with(KEY, b"quarterly numbers", scope="org:1", version=1, field=FIELD)
    for index in range(len(value)):
        for bit in (0x01, 0x80):
            tampered = bytearray(value)
            tampered[index] ^= bit
            with pytest.raises(crypto.DecryptionError):
                crypto.decrypt_with(KEY, bytes(tampered), scope="org:1", field=FIELD)


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ("org:2", FIELD),  # another tenant
        ("org:1", crypto.Field(table="message", column="subject", row="43")),  # another row
        ("org:1", crypto.Field(table="message", column="body", row="42")),  # another column
        ("org:1", crypto.Field(table="contact", column="subject", row="42")),  # another table
    ],
)
def test_r44_ciphertext_cannot_move(scope: str, field: crypto.Field) -> None:
    value = crypto.encrypt_with(KEY, b"secret", scope="org:1", version=1, field=FIELD)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_with(KEY, value, scope=scope, field=field)


def test_r44_nonces_are_unique() -> None:
    nonces = {
        crypto.encrypt_with(KEY, b"", scope="s", version=1, field=FIELD)[6:18] for _ in range(100_000)
    }
    assert len(nonces) == 100_000


@pytest.mark.django_db
def test_r44_data_key_is_stored_wrapped_and_per_scope() -> None:
    ring = keys.keyring()
    value = ring.encrypt_text("org:test-a", FIELD, "hello")
    assert ring.decrypt_text("org:test-a", FIELD, value) == "hello"
    ring.encrypt_text("org:test-b", FIELD, "hello")
    rows = {row.scope: row for row in DataKey.objects.filter(scope__in=["org:test-a", "org:test-b"])}
    assert set(rows) == {"org:test-a", "org:test-b"}
    assert ring.key("org:test-a", 1) != ring.key("org:test-b", 1)
    assert ring.key("org:test-a", 1) not in bytes(rows["org:test-a"].wrapped_key)
    with pytest.raises(crypto.DecryptionError):
        ring.decrypt_text("org:test-b", FIELD, value)


@pytest.mark.django_db
def test_r44_usage_counter_forces_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = keys.Keyring(keys.keyring().master_keys and list(keys.keyring().master_keys.values()))
    monkeypatch.setattr(keys, "ENCRYPTIONS_PER_KEY_LIMIT", 5)
    monkeypatch.setattr(keys, "FLUSH_EVERY", 2)
    old = ring.encrypt_text("org:busy", FIELD, "first")
    for _ in range(6):
        ring.encrypt_text("org:busy", FIELD, "more")
    assert DataKey.objects.get(scope="org:busy", is_current=True).version == 2
    assert crypto.key_version_of(ring.encrypt_text("org:busy", FIELD, "new")) == 2
    assert ring.decrypt_text("org:busy", FIELD, old) == "first"  # old versions stay readable


@pytest.mark.django_db
def test_r46_tampered_wrapped_key_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    ring = keys.Keyring(list(keys.keyring().master_keys.values()))
    value = ring.encrypt_text("org:tamper", FIELD, "x")
    row = DataKey.objects.get(scope="org:tamper")
    wrapped = bytearray(row.wrapped_key)
    wrapped[-1] ^= 1
    DataKey.objects.filter(pk=row.pk).update(wrapped_key=bytes(wrapped))
    fresh = keys.Keyring(list(ring.master_keys.values()))
    with pytest.raises(crypto.DecryptionError):
        fresh.decrypt_text("org:tamper", FIELD, value)


@pytest.fixture
def temporary_master_key(tmp_path, settings):  # type: ignore[no-untyped-def]
    """A master key file of the test's own; the process-wide keyring is restored afterwards.

    Other tests (and the service processes some of them start) read the data directory's key
    file; a keyring left on this one would wrap their new data keys with a key they lack.
    """
    original_path = settings.MASTER_KEY_PATH
    key_file = tmp_path / "master.key"
    key_file.write_text(new_master_key_line() + "\n")
    settings.MASTER_KEY_PATH = key_file
    keys.reload_keyring()
    yield key_file
    settings.MASTER_KEY_PATH = original_path
    keys.reload_keyring()


@pytest.mark.django_db
def test_r46_master_key_rotation_rewraps_and_old_key_can_go(temporary_master_key) -> None:  # type: ignore[no-untyped-def]
    key_file = temporary_master_key
    value = keys.keyring().encrypt_text("org:rotate", FIELD, "survives rotation")
    new_id, count = keys.rotate_master_key()
    assert count >= 1
    assert DataKey.objects.get(scope="org:rotate").master_key_id == new_id
    # Remove the old key from the file: everything still reads.
    key_file.write_text(key_file.read_text().splitlines()[0] + "\n")
    keys.reload_keyring()
    assert keys.keyring().decrypt_text("org:rotate", FIELD, value) == "survives rotation"


def test_r46_missing_master_key_stops_start_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from postroom.core.env import ConfigError

    with pytest.raises(ConfigError, match="POSTROOM_MASTER_KEY_FILE"):
        load_master_keys(tmp_path / "absent.key", create=False)
    with pytest.raises(ConfigError, match="POSTROOM_MASTER_KEY_FILE"):
        parse_master_keys("abc:notbase64\n", "test")


def test_r46_master_key_file_is_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "data" / "master.key"
    keys_loaded = load_master_keys(path, create=True)
    assert isinstance(keys_loaded[0], MasterKey)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_keys(path, create=True) == keys_loaded  # never overwritten
