"""``postroom import-mailbox PATH --mailbox ID``: import an mbox file or a Maildir (resumable).

An operator command: whoever runs it has the server's files and keys already. The import is
audited with the mailbox, the folder and the counts, never a message's content.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from postroom.audit.actions import audit_record
from postroom.conversations.mailbox_import import ProgressBar, import_mailbox_file
from postroom.mailboxes.models import Mailbox


class Command(BaseCommand):
    help = "Import an mbox file (e.g. a Google Takeout export) or a Maildir into a mailbox; run it again to resume."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="an mbox file or a Maildir directory")
        parser.add_argument("--mailbox", required=True, help="the id of the mailbox to import into")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            mailbox = Mailbox.objects.filter(pk=options["mailbox"]).first()
        except ValidationError:
            mailbox = None
        if mailbox is None:
            raise CommandError(f"no mailbox has the id {options['mailbox']!r}")
        path = Path(options["path"])
        progress = None if options["no_progress"] else ProgressBar(lambda text: (sys.stderr.write(text), sys.stderr.flush()))
        try:
            result = import_mailbox_file(mailbox, path, progress)
        except (ValueError, OSError) as error:
            raise CommandError(str(error)) from None
        audit_record(
            action="mailbox.file_imported",
            organization=mailbox.organization,
            target=mailbox,
            target_label=mailbox.name,
            details={"folder_id": result.folder.pk, "total": result.total, "imported": result.imported, "skipped": result.skipped},
        )
        self.stdout.write(
            f"{result.imported} message(s) imported into {mailbox.name} / {result.folder.name}, {result.skipped} already there."
        )
