"""``postroom sync`` as real processes on PostgreSQL: SIGKILLed at random moments it loses and
duplicates nothing; two services share mailboxes and one takes over when the other dies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from postroom.conversations.models import Message, MessageCopy
from postroom.mailboxes.models import Mailbox
from postroom.sync.tests.test_engine import make_message
from postroom.sync.tests.test_service import wait_until
from postroom.testing.dovecot import Dovecot, MailUser

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sync_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``sync_process(*arguments)`` starts ``postroom sync`` on the test database."""
    if connection.vendor != "postgresql":
        pytest.skip("separate processes need a shared database server (PostgreSQL)")
    database = settings.DATABASES["default"]
    environment = os.environ | {
        "DATABASE_URL": f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
    }
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"sync-{len(started)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "postroom", "sync", *arguments], env=environment, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()

# Bounds, not measurements: these tests start real service processes, which on a loaded 2-core
# machine (two test workers, CI) can take many seconds just to start.
PROCESS_WAIT_SECONDS = 180.0


def fill(dovecot: Dovecot, user: MailUser, numbers: range) -> list[int]:
    with dovecot.connect(user) as client:
        responses = [client.append("INBOX", make_message(number)) for number in numbers]
    return [int(response.decode().split("]")[0].split()[-1]) for response in responses]


def expire_leases() -> None:
    """What a minute without renewal does: the dead process's leases become free."""
    Mailbox.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def assert_exactly_once(mailbox: Mailbox, server_uids: list[int]) -> None:
    copies = list(MessageCopy.objects.filter(mailbox=mailbox).values_list("uid", "message_id"))
    assert sorted(uid for uid, _ in copies) == sorted(server_uids)  # none lost, none twice
    assert len({message_id for _, message_id in copies}) == len(server_uids)
    assert Message.objects.filter(organization=mailbox.organization).count() == len(server_uids)


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    dovecot: Dovecot, mail_user: MailUser, make_mailbox: Callable[..., Mailbox], sync_process: Callable[..., subprocess.Popen[bytes]]
) -> None:
    server_uids = fill(dovecot, mail_user, range(300))
    mailbox = make_mailbox(mail_user)
    chooser = random.Random(3)
    next_number = 300
    for _round in range(20):
        process = sync_process()
        time.sleep(chooser.uniform(0.3, 1.5))
        if chooser.random() < 0.5:  # mail keeps arriving between and during the crashes
            server_uids += fill(dovecot, mail_user, range(next_number, next_number + 3))
            next_number += 3
        process.send_signal(signal.SIGKILL)
        process.wait()
        close_old_connections()
        expire_leases()
    survivor = sync_process()
    wait_until(lambda: MessageCopy.objects.filter(mailbox=mailbox).count() >= len(server_uids), "the import to finish", timeout=PROCESS_WAIT_SECONDS)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=30) == 0
    assert Mailbox.objects.get(pk=mailbox.pk).lease_owner == ""  # a clean stop gives the lease back
    assert_exactly_once(mailbox, server_uids)


def test_two_services_share_mailboxes_and_one_takes_over_from_a_dead_one(
    dovecot: Dovecot, make_mailbox: Callable[..., Mailbox], sync_process: Callable[..., subprocess.Popen[bytes]]
) -> None:
    users = [dovecot.create_user() for _ in range(4)]
    mailboxes = [make_mailbox(user) for user in users]
    for user in users:
        fill(dovecot, user, range(5))
    # Each may sync at most 2 of the 4 mailboxes, so both must work.
    first = sync_process("--max-mailboxes", "2", "--lease-seconds", "3")
    second = sync_process("--max-mailboxes", "2", "--lease-seconds", "3")
    wait_until(lambda: MessageCopy.objects.filter(mailbox__in=mailboxes).count() == 20, "both services to import", timeout=PROCESS_WAIT_SECONDS)
    owners = dict(Mailbox.objects.filter(pk__in=[box.pk for box in mailboxes]).values_list("pk", "lease_owner"))
    assert len(set(owners.values())) == 2
    first_pid = str(first.pid)
    orphaned = [pk for pk, owner in owners.items() if owner.split(":")[1] == first_pid]
    assert len(orphaned) == 2
    first.send_signal(signal.SIGKILL)
    first.wait()
    # The survivor may hold only two; give it room by stopping nothing: a third service starts
    # and takes the dead one's mailboxes once their leases expire.
    third = sync_process("--max-mailboxes", "2", "--lease-seconds", "3")
    wait_until(
        lambda: set(Mailbox.objects.filter(pk__in=orphaned).values_list("lease_owner", flat=True)) <= {o for o in Mailbox.objects.values_list("lease_owner", flat=True) if o.split(":")[1] == str(third.pid)} and
        all(Mailbox.objects.filter(pk__in=orphaned).values_list("lease_owner", flat=True)),
        "the dead service's mailboxes to be taken over",
        timeout=PROCESS_WAIT_SECONDS,
    )
    late_user = next(user for user, box in zip(users, mailboxes, strict=True) if box.pk == orphaned[0])
    (late_uid,) = fill(dovecot, late_user, range(100, 101))
    wait_until(lambda: MessageCopy.objects.filter(mailbox_id=orphaned[0], uid=late_uid).exists(), "new mail in a taken-over mailbox", timeout=PROCESS_WAIT_SECONDS)
    for box in mailboxes:
        assert MessageCopy.objects.filter(mailbox=box).count() == MessageCopy.objects.filter(mailbox=box).values("uid").distinct().count()
    second.send_signal(signal.SIGTERM)
    third.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert third.wait(timeout=30) == 0
