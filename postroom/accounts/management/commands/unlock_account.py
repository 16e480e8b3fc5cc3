"""``postroom manage unlock_account <email>``: lift an account's sign-in delays and hard stop.

For the operator, when an owner who cannot reset by email (lost mailbox) is refused after a
guessing attack (see ``postroom.accounts.throttle``). The clearing is audited.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from postroom.accounts.models import User
from postroom.accounts.throttle import account_throttle_clear


class Command(BaseCommand):
    help = "Clear the failed sign-in counters of one account (after a guessing attack)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="the account's sign-in address")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(email__iexact=options["email"].strip()).first()
        if user is None:
            raise CommandError(f"no account signs in with {options['email']!r}")
        account_throttle_clear(user=user, reason="operator")
        self.stdout.write(f"sign-in counters cleared for {user.email}")
