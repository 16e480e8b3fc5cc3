"""The team inbox under load: the inbox list and a conversation page with 100,000 conversations.

Not a test (nothing here asserts a time). Run from the repository root, against a scratch
PostgreSQL database (it is migrated and filled; use a name of its own):

    .venv/bin/python bench/inbox_bench.py --conversations 100000 \
        --database-url postgres://postgres@127.0.0.1:5432/h_inbox_bench --json /tmp/inbox.json

What it does, in one run:
1. Seeds one organization: a member (Alice) whose mailbox holds every conversation, a team
   (Support, Alice and Bob) with which half of them are shared, one to three messages each
   (sealed like real mail: subject, addresses, snippet, text), labels and assignments on some.
   Rows are bulk-inserted (the import path is measured by ``import_bench.py``).
2. Starts ``postroom web --workers N`` (one process per core by default) on a free port.
3. For each page — ``/health`` (the framework's floor, the reference), Alice's inbox, Bob's team
   inbox, a conversation page — runs ``wrk`` with ``--clients`` connections for ``--seconds``,
   signed in with a real session cookie, and reads its latency distribution (p50/p90/p99) and
   throughput; every page is checked to answer 200 first.
4. Counts the SQL queries of each page in-process at this size, and again for an organization
   with 10 conversations: the two counts must be equal (the test suite asserts the same).
5. Prints and writes (``--json``) the figures, and each page's p99 over the floor's p99.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WRK = "/usr/bin/wrk"
EPOCH = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
WORDS = [
    "order",
    "invoice",
    "refund",
    "delivery",
    "account",
    "password",
    "upgrade",
    "meeting",
    "contract",
    "renewal",
    "shipping",
    "payment",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed(count: int, rng: random.Random, slug: str) -> dict[str, Any]:
    from django.db import transaction

    from postroom.accounts.models import User
    from postroom.conversations.models import (
        Assignment,
        Conversation,
        ConversationLabel,
        ConversationMember,
        ConversationShare,
        Label,
        Message,
        MessageCopy,
        Place,
    )
    from postroom.mailboxes.models import Folder, FolderRole
    from postroom.mailboxes.tests.factories import make_mailbox
    from postroom.orgs.models import Membership, Organization, Team, TeamMembership
    from postroom.orgs.policy import Role

    organization = Organization.objects.create(name=f"Bench {slug}", slug=slug)
    alice = Membership.objects.create(
        organization=organization, user=User.objects.create_user(f"alice-{slug}@example.test"), role=Role.OWNER
    )
    bob = Membership.objects.create(organization=organization, user=User.objects.create_user(f"bob-{slug}@example.test"), role=Role.MEMBER)
    team = Team.objects.create(organization=organization, name="Support")
    TeamMembership.objects.bulk_create([TeamMembership(team=team, membership=alice), TeamMembership(team=team, membership=bob)])
    mailbox = make_mailbox(alice, address=f"alice-{slug}@example.test")
    inbox = Folder.objects.create(mailbox=mailbox, name="INBOX", role=FolderRole.INBOX, uidvalidity=1)
    labels = [Label.objects.create(organization=organization, name=name) for name in ("Billing", "Urgent", "VIP")]

    uid = 0
    batch = 2000
    sample_conversation = None
    for start in range(0, count, batch):
        conversations, messages, copies, rows, shares, assignments, labelled = [], [], [], [], [], [], []
        for number in range(start, min(count, start + batch)):
            when = EPOCH + timedelta(minutes=number)
            subject = f"{rng.choice(WORDS).title()} question #{number}"
            conversation = Conversation(organization=organization, last_message_at=when, message_count=rng.randint(1, 3))
            conversation.subject = subject
            shared = number % 2 == 0
            conversation.is_shared = shared
            conversations.append(conversation)
            for index in range(conversation.message_count):
                message = Message(
                    organization=organization, conversation=conversation, sent_at=when - timedelta(hours=index), size=30_000,
                    raw_blob="", content_index=f"bench-{slug}-{number}-{index}", shared=shared,
                )  # fmt: skip
                message.subject = subject if index == 0 else f"Re: {subject}"
                message.addresses = {
                    "from": [["Dana Customer", f"dana{number % 97}@customer.example"]],
                    "to": [["Alice", mailbox.email_address]],
                }
                message.snippet = f"Hello, about my {rng.choice(WORDS)}: could you have a look at it"
                message.text_body = "Hello,\n\n" + " ".join(rng.choice(WORDS) for _ in range(300)) + "\n\n-- \nDana\n"
                messages.append(message)
                uid += 1
                copies.append(MessageCopy(mailbox=mailbox, folder=inbox, uidvalidity=1, uid=uid, message=message, seen=number % 3 != 0))
            rows.append(ConversationMember(
                conversation=conversation, membership=alice, organization=organization, via_mailbox=True, via_share=shared,
                place=Place.INBOX if number % 4 else Place.ARCHIVE, copies_place=Place.INBOX, unread=number % 3 == 0,
                last_activity_at=when,
            ))  # fmt: skip
            if shared:
                shares.append(ConversationShare(conversation=conversation, team=team, created_by=alice))
                rows.append(ConversationMember(
                    conversation=conversation, membership=bob, organization=organization, via_share=True, place=Place.NONE,
                    unread=number % 5 == 0, last_activity_at=when,
                ))  # fmt: skip
                if number % 6 == 0:
                    assignments.append(Assignment(conversation=conversation, membership=bob, assigned_by=alice))
            if number % 7 == 0:
                labelled.append(ConversationLabel(conversation=conversation, label=labels[number % len(labels)]))
        with transaction.atomic():
            Conversation.objects.bulk_create(conversations)
            Message.objects.bulk_create(messages)
            MessageCopy.objects.bulk_create(copies)
            ConversationMember.objects.bulk_create(rows)
            ConversationShare.objects.bulk_create(shares)
            Assignment.objects.bulk_create(assignments)
            ConversationLabel.objects.bulk_create(labelled)
        sample_conversation = conversations[len(conversations) // 2]
        if count >= 10_000 and (start // batch) % 10 == 0:
            print(f"  seeded {min(count, start + batch):,} / {count:,} conversations", flush=True)
    return {"organization": organization, "alice": alice, "bob": bob, "team": team, "conversation": sample_conversation}


def session_cookie(membership: Any) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(membership.user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def pages(seeded: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    from django.urls import reverse

    slug = seeded["organization"].slug
    return {
        "health (floor)": ("/health", None),
        "inbox list (alice)": (reverse("conversations:list", args=[slug]), seeded["alice"]),
        "team inbox list (bob)": (reverse("conversations:list", args=[slug]) + f"?view=team&team={seeded['team'].pk}", seeded["bob"]),
        "conversation page (alice)": (reverse("conversations:detail", args=[slug, seeded["conversation"].pk]), seeded["alice"]),
    }


def count_queries(path: str, membership: Any) -> int:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    if membership is not None:
        client.force_login(membership.user, backend="allauth.account.auth_backends.AuthenticationBackend")
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}")
    return len(captured)


_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, cookie: str | None, clients: int, seconds: int) -> dict[str, Any]:
    command = [WRK, "--latency", "-t", "2", "-c", str(clients), "-d", f"{seconds}s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    latencies = {f"p{match[0]}_ms": round(float(match[1]) * _UNITS[match[2]], 2) for match in _LATENCY.findall(output)}
    requests = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {**latencies, "requests_per_second": float(requests[1]) if requests else None, "non_2xx": int(errors[1]) if errors else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--database-url", required=True, help="a scratch PostgreSQL database (it is filled)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="postroom-inbox-bench-"))
    os.environ.update({
        "POSTROOM_DATA_DIR": str(work / "data"), "DJANGO_SETTINGS_MODULE": "postroom.settings", "DATABASE_URL": arguments.database_url,
        "POSTROOM_LOG_LEVEL": "WARNING",
    })  # fmt: skip
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    rng = random.Random(arguments.seed)
    run_id = f"{os.getpid()}-{int(time.time())}"
    started = time.perf_counter()
    big = seed(arguments.conversations, rng, f"big-{run_id}")
    small = seed(10, rng, f"small-{run_id}")
    print(f"seeded in {time.perf_counter() - started:.0f} s", flush=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    results: dict[str, Any] = {
        "conversations": arguments.conversations, "clients": arguments.clients, "seconds": arguments.seconds, "workers": arguments.workers,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_before": [round(v, 2) for v in os.getloadavg()]},
        "queries": {}, "pages": {},
    }  # fmt: skip
    big_pages, small_pages = pages(big), pages(small)
    for name, (path, membership) in big_pages.items():
        results["queries"][name] = {
            "at_n": count_queries(path, membership),
            "at_10": count_queries(small_pages[name][0], small_pages[name][1]),
        }
    print(f"queries per page: {results['queries']}", flush=True)

    port = free_port()
    log = (work / "web.log").open("wb")
    web = subprocess.Popen(
        [sys.executable, "-m", "postroom", "web", "--port", str(port), "--workers", str(arguments.workers), "--no-migrate"],
        env={**os.environ, "POSTROOM_PUBLIC_URL": f"http://127.0.0.1:{port}"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the web server did not start; see {work / 'web.log'}")
        for name, (path, membership) in big_pages.items():
            cookie = session_cookie(membership) if membership is not None else None
            url = f"http://127.0.0.1:{port}{path}"
            check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *(["-H", f"Cookie: {cookie}"] if cookie else []), url],
                                   capture_output=True, text=True, check=True).stdout  # fmt: skip
            if check != "200":
                raise RuntimeError(f"{name}: {url} answered {check}")
            results["pages"][name] = run_wrk(url, cookie, arguments.clients, arguments.seconds)
            print(f"{name}: {results['pages'][name]}", flush=True)
    finally:
        web.terminate()
        web.wait(timeout=30)
    floor = results["pages"]["health (floor)"]["p99_ms"]
    results["p99_over_floor"] = {name: round(page["p99_ms"] / floor, 2) for name, page in results["pages"].items() if floor}
    results["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results, indent=2), flush=True)
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
