"""R60: every Security entry of the changelog names the regression test that guards the fix."""

from __future__ import annotations

import re

from postroom.core.tests.processes import REPOSITORY

_TEST_NAME = re.compile(r"\btest_r\d{2}_\w+")


def security_entries(changelog: str) -> list[str]:
    entries: list[str] = []
    in_security = False
    for line in changelog.splitlines():
        if line.startswith("#"):
            in_security = line.strip("# ").lower() == "security"
        elif in_security and line.startswith("- "):
            entries.append(line[2:])
        elif in_security and line.startswith("  ") and entries:
            entries[-1] += " " + line.strip()
    return entries


def defined_tests() -> set[str]:
    return {
        match
        for path in (REPOSITORY / "postroom").rglob("test_*.py")
        for match in re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.MULTILINE)
    }


def test_r60_security_changelog_entries_name_existing_regression_tests() -> None:
    entries = security_entries((REPOSITORY / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert entries
    tests = defined_tests()
    for entry in entries:
        named = _TEST_NAME.findall(entry)
        assert named, f"security entry names no test_rNN_ test: {entry[:80]}"
        for name in named:
            assert name in tests, f"{name} (named in CHANGELOG.md) does not exist"


def test_r60_the_changelog_check_rejects_an_entry_without_a_test() -> None:
    sample = "# Changelog\n## 1.0\n### Security\n- Fixed a leak\n  in the logs.\n### Fixed\n- test_r01_x not security\n"
    assert security_entries(sample) == ["Fixed a leak in the logs."]
    assert not _TEST_NAME.findall(security_entries(sample)[0])


def test_r60_private_reporting_channel_and_fix_time_frames_are_documented() -> None:
    policy = (REPOSITORY / "docs" / "security.md").read_text(encoding="utf-8")
    assert "private vulnerability" in policy
    assert "Fix time frames" in policy
    assert "regression test" in policy


def test_r46_crypto_inventory_lists_every_key_and_its_rotation() -> None:
    inventory = (REPOSITORY / "docs" / "crypto.md").read_text(encoding="utf-8")
    for key in ("Master key", "Data keys", "Blind-index keys", "SECRET_KEY", "Setup token", "Invitation tokens", "Passwords", "TOTP seeds", "Recovery codes"):
        assert f"**{key}" in inventory or f"`{key}`" in inventory, key
    assert "postroom keys rotate" in inventory
