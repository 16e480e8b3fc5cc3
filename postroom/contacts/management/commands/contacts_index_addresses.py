"""``postroom manage contacts_index_addresses``: index the addresses of mail stored before the
contacts app existed, so contact pages list older conversations too.

New mail is indexed as it arrives (``contacts.actions.messages_stored``); this walks the older
messages in id order, in batches, each batch in its own transaction, and can be stopped and run
again at any time: rows already there are kept (``ignore_conflicts``), and ``--after`` resumes
from the last id it printed. A data migration would have to decrypt every message inside
``migrate``, in one transaction, with the keyring loaded: an operator command is the safer shape.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from postroom.contacts.actions import messages_stored
from postroom.conversations.models import Message


class Command(BaseCommand):
    help = "Index who took part in each stored message (for contact pages); safe to stop and run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=500, help="messages per transaction (default 500)")
        parser.add_argument("--after", default="", help="resume after this message id (printed by an earlier run)")
        parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")

    def handle(self, *args: Any, **options: Any) -> None:
        batch = max(1, options["batch"])
        messages = Message.objects.order_by("pk")
        if options["after"]:
            messages = messages.filter(pk__gt=options["after"])
        total = messages.count()
        done = 0
        last = None
        while True:
            ids = list((messages.filter(pk__gt=last) if last else messages).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            with transaction.atomic():
                messages_stored(new_message_ids=ids, authors={})
            done += len(ids)
            last = ids[-1]
            if not options["no_progress"]:
                sys.stderr.write(f"\r{done}/{total} messages indexed (last id {last})")
                sys.stderr.flush()
        if not options["no_progress"] and done:
            sys.stderr.write("\n")
        self.stdout.write(f"{done} message(s) indexed.")
