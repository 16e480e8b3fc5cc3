"""``postroom manage blobs_sweep [--dry-run] [--grace-hours N]``: remove blobs no row references.

See ``postroom.ops.blobs`` for what is kept and why. Progress goes to stderr and the summary to
stdout, as counts only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from postroom.ops.blobs import DEFAULT_GRACE, MINIMUM_GRACE, SweepReport, blobs_sweep


class Command(BaseCommand):
    help = "Remove encrypted blobs that no message, attachment or outgoing message references any more."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=DEFAULT_GRACE.total_seconds() / 3600,
            help=f"spare blobs written or reused in the last N hours (default {DEFAULT_GRACE.total_seconds() / 3600:g}, at least "
            f"{MINIMUM_GRACE.total_seconds() / 3600:g}): a transaction that is about to reference one may still be running",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        grace = timedelta(hours=options["grace_hours"])
        if grace < MINIMUM_GRACE:
            raise CommandError(
                f"--grace-hours must be at least {MINIMUM_GRACE.total_seconds() / 3600:g}: a shorter grace period could remove "
                "a blob that a transaction still running is about to reference."
            )
        dry_run = bool(options["dry_run"])

        def progress(report: SweepReport) -> None:
            self.stderr.write(f"blobs_sweep: {report.scanned} blobs scanned, {report.removed} {'to remove' if dry_run else 'removed'}")

        report = blobs_sweep(grace=grace, dry_run=dry_run, progress=progress)
        verb = "would remove" if dry_run else "removed"
        self.stdout.write(
            f"{report.scanned} blobs scanned: {report.referenced} referenced, {report.recent} recent (within the grace period), "
            f"{verb} {report.removed} unreferenced ({report.removed_bytes} bytes); {verb} {report.temporary_removed} "
            f"leftover temporary files; {report.put_back} put back; {report.skipped_directories} directories of other scopes skipped."
        )
