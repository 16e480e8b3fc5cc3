"""R57: every dependency is pinned by version and hash, installed only that way, and listed in a
CycloneDX SBOM made from the same lock file."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from postroom.core.tests.processes import REPOSITORY

REQUIREMENTS = REPOSITORY / "requirements"
_PINNED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]+\])?==(?P<version>[^\s;]+)(\s*;[^-]+)?")


def locked_requirements(path: Path) -> dict[str, tuple[str, list[str]]]:
    """``name -> (version, hashes)`` from a pip-compile style lock file; fails on anything else."""
    logical_lines = re.sub(r"\\\n", " ", path.read_text()).splitlines()
    locked = {}
    for line in logical_lines:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"{path.name}: option line {line!r} (indexes and flags belong to the install command)"
        requirement, *options = line.split()
        match = _PINNED.fullmatch(requirement)
        assert match, f"{path.name}: {requirement!r} is not pinned with =="
        hashes = [option.removeprefix("--hash=") for option in options if option.startswith("--hash=sha256:")]
        assert hashes, f"{path.name}: {requirement} has no sha256 hash"
        assert len(hashes) == len(options), f"{path.name}: {requirement} has options other than --hash"
        locked[match["name"].lower().replace("_", "-")] = (match["version"], hashes)
    return locked


def test_r57_every_locked_requirement_is_pinned_with_hashes() -> None:
    lock_files = sorted(REQUIREMENTS.glob("*.txt"))
    assert {path.stem for path in lock_files} >= {"base", "dev", "tools"}
    for path in lock_files:
        assert len(locked_requirements(path)) >= 10, path


def test_r57_every_direct_dependency_is_in_its_lock_file() -> None:
    for source in sorted(REQUIREMENTS.glob("*.in")):
        locked = locked_requirements(source.with_suffix(".txt"))
        for line in source.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            name = re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower().replace("_", "-")
            assert name in locked, f"{name} from {source.name} is missing from {source.with_suffix('.txt').name}: run make lock"


def install_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for path in (REPOSITORY / "scripts" / "test", REPOSITORY / "Makefile"):
        for line in path.read_text().splitlines():
            if re.search(r"pip\"? install", line) and not line.lstrip().startswith("#"):
                commands.append((f"{path.name}: {line.strip()}", shlex.split(line.replace('"', ""), comments=True)))
    return commands


def test_r57_every_install_requires_hashes() -> None:
    commands = install_commands()
    assert len(commands) >= 5
    for where, words in commands:
        if "-r" in words:
            assert "--require-hashes" in words, where
        else:
            # The only other install is Postroom itself from the work tree, without dependencies.
            assert "--no-deps" in words, where
            assert "-e" in words, where
        assert not {"--index-url", "-i", "--extra-index-url", "--trusted-host", "-f", "--find-links"} & set(words), where


@pytest.mark.timeout(600)
def test_r57_sbom_lists_every_runtime_dependency_with_its_hashes(tmp_path: Path) -> None:
    output = tmp_path / "postroom.cdx.json"
    result = subprocess.run(["make", "--no-print-directory", "sbom", f"SBOM={output}"], cwd=REPOSITORY, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    sbom = json.loads(output.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["name"] == "postroom"
    components = {component["name"].lower().replace("_", "-"): component for component in sbom["components"]}
    for name, (version, hashes) in locked_requirements(REQUIREMENTS / "base.txt").items():
        component = components[name]
        assert component["version"] == version
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        listed = {entry["content"] for reference in component.get("externalReferences", []) for entry in reference.get("hashes", [])}
        assert {value.removeprefix("sha256:") for value in hashes} <= listed, name
