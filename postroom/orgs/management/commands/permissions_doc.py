"""``postroom manage permissions_doc``: write docs/permissions.md from the policy table."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from postroom.orgs.policy import permissions_markdown

DOC_PATH = Path(settings.PACKAGE_DIR).parent / "docs" / "permissions.md"


class Command(BaseCommand):
    help = "Write docs/permissions.md from postroom/orgs/policy.py (or, with --check, fail if it is out of date)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--check", action="store_true", help="only compare; exit with an error if the page differs")

    def handle(self, *args: Any, check: bool = False, **options: Any) -> None:
        wanted = permissions_markdown()
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if check:
            if current != wanted:
                raise CommandError(f"{DOC_PATH} is out of date: run `postroom manage permissions_doc`")
            self.stdout.write(f"{DOC_PATH} is up to date.")
            return
        DOC_PATH.parent.mkdir(exist_ok=True)
        DOC_PATH.write_text(wanted, encoding="utf-8")
        self.stdout.write(f"Wrote {DOC_PATH}.")
