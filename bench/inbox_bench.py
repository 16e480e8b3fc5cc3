"""The team inbox under load: the inbox pages with 100,000 conversations (issue #4).

Not a test (nothing here asserts a time). Run from the repository root, against a scratch
PostgreSQL database (it is migrated and filled; use a name of its own):

    .venv/bin/python bench/inbox_bench.py --conversations 100000 \
        --database-url postgres://postgres@127.0.0.1:5432/h_inbox_bench --json /tmp/inbox.json

What it does, in one run (bench/README.md has the details and the figures):
1. Seeds an organization shaped like a support desk (team mailbox, private mail, named shares,
   closed, assigned and labelled conversations, sealed like real mail) and one with 10
   conversations; rows are bulk-inserted and ``access.access_refresh`` computes who sees what.
   ``--reuse big-…,small-…`` measures organizations seeded by an earlier run instead.
2. Checks every page shows the seeded data and counts its SQL queries at N and at 10.
3. Starts ``postroom web --workers N`` (``POSTROOM_DATABASE_POOL_SIZE`` per worker) and, per
   page — ``/health`` (the floor), the inbox, a team inbox, a label view, a conversation page,
   the API list — measures open-loop latency at constant rates (``--rates``) and for 50 people
   with think time (``bench/loadgen.py``), then closed-loop with ``wrk -c 50``, with the
   server's CPU time per request.
4. Prints and writes (``--json``) the figures and each page's p99 over the floor's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadgen  # bench/loadgen.py, beside this file

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
    """One organization shaped like a support desk, bulk-inserted in the shape the real code
    writes; who sees what (``ConversationMember``) is then computed by ``access.access_refresh``
    itself, and assignments, closing and reading are applied as ``conversations.actions`` does."""
    from django.db import connection, transaction
    from django.db.models import Exists, OuterRef

    from postroom.accounts.models import User
    from postroom.conversations import access
    from postroom.conversations.models import (
        Assignment,
        Conversation,
        ConversationLabel,
        ConversationMember,
        ConversationShare,
        ConversationStatus,
        Direction,
        Label,
        Message,
        MessageCopy,
        Place,
        TimelineEvent,
    )
    from postroom.mailboxes.models import Folder, FolderRole
    from postroom.mailboxes.tests.factories import make_mailbox
    from postroom.orgs.models import Membership, Organization, Team, TeamMembership
    from postroom.orgs.policy import Role

    organization = Organization.objects.create(name=f"Bench {slug}", slug=slug)
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    members = {
        name: Membership.objects.create(
            organization=organization, user=User.objects.create_user(f"{name}-{slug}@example.test"),
            role=Role.OWNER if name == "alice" else Role.MEMBER,
        )
        for name in names
    }
    alice, bob, carol = members["alice"], members["bob"], members["carol"]
    support = Team.objects.create(organization=organization, name="Support")
    sales = Team.objects.create(organization=organization, name="Sales")
    TeamMembership.objects.bulk_create(
        [TeamMembership(team=support, membership=members[name]) for name in names[:6]]
        + [TeamMembership(team=sales, membership=members[name]) for name in ("alice", *names[6:])]
    )

    def mailbox_with_folders(owner: Membership, address: str, team: Team | None = None) -> tuple[Any, dict[str, Folder]]:
        mailbox = make_mailbox(owner, address=address, team=team)
        folders = {
            role: Folder.objects.create(mailbox=mailbox, name=name, role=role, uidvalidity=1)
            for role, name in ((FolderRole.INBOX, "INBOX"), (FolderRole.SENT, "Sent"), (FolderRole.ARCHIVE, "Archive"))
        }
        return mailbox, folders

    # Half the mail reaches the Support team mailbox (owned by Alice), the rest the members' own.
    team_box = mailbox_with_folders(alice, f"support-{slug}@example.test", support)
    alice_box = mailbox_with_folders(alice, f"alice-{slug}@example.test")
    bob_box = mailbox_with_folders(bob, f"bob-{slug}@example.test")
    labels = [Label.objects.create(organization=organization, name=name) for name in ("Billing", "Urgent", "VIP", "Bug", "Feedback")]
    labels.append(Label.objects.create(organization=organization, owner=alice, name="Follow up"))
    bodies = ["Hello,\n\n" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 400))) + "\n\n-- \nDana\n" for _ in range(200)]

    uid = 0
    batch = 2000
    conversation_ids: list[Any] = []
    for start in range(0, count, batch):
        conversations, messages, copies, shares, assignments, labelled, events = [], [], [], [], [], [], []
        for number in range(start, min(count, start + batch)):
            when = EPOCH + timedelta(minutes=number)
            kind = number % 10
            mailbox, folders = team_box if kind % 2 == 0 else (alice_box if kind in (1, 3, 5) else bob_box)
            via_team = mailbox is team_box[0]
            # The conversation page's: a recent team thread with a label and an assignee, in
            # every organization (so its queries compare across sizes).
            showcase = number == count - 2
            # Most threads are short; every 500th is a long one.
            length = 4 if showcase else 12 if number % 500 == 250 else rng.choice((1, 1, 1, 2, 2, 3, 4))
            subject = f"{rng.choice(WORDS).title()} question #{number}"
            conversation = Conversation(organization=organization, last_message_at=when, message_count=length, subject_index=f"s{number}")
            conversation.subject = subject
            named_share = not via_team and number % 50 == 1  # Alice asks Carol about one of hers now and then
            conversation.is_shared = via_team or named_share
            # Older team conversations are mostly closed; new ones open.
            if via_team and number < count * 0.8 and number % 5 != 0:
                conversation.status, conversation.status_changed_at = ConversationStatus.CLOSED, when
            conversations.append(conversation)
            archived = number < count * 0.9 and number % 4 != 0  # older mail was filed away on the server
            for index in range(length):
                outbound = index % 2 == 1
                message = Message(
                    organization=organization, conversation=conversation, sent_at=when - timedelta(minutes=30 * (length - 1 - index)),
                    size=rng.randint(3_000, 60_000), raw_blob="", content_index=f"c-{slug}-{number}-{index}",
                    message_id_index=f"m-{slug}-{number}-{index}", shared=via_team or named_share,
                    direction=Direction.OUTBOUND if outbound else Direction.INBOUND, has_attachments=number % 9 == 0 and index == 0,
                )  # fmt: skip
                message.subject = subject if index == 0 else f"Re: {subject}"
                customer = ["Dana Customer", f"dana{number % 997}@customer.example"]
                us = ["Support" if via_team else "Alice", mailbox.email_address]
                message.addresses = {"from": [us if outbound else customer], "to": [customer if outbound else us]}
                message.snippet = f"Hello, about my {rng.choice(WORDS)}: could you have a look at it"
                message.text_body = rng.choice(bodies)
                messages.append(message)
                uid += 1
                folder = folders[FolderRole.SENT] if outbound else folders[FolderRole.ARCHIVE if archived else FolderRole.INBOX]
                seen = outbound or number < count * 0.97 or number % 3 != 0
                copies.append(MessageCopy(mailbox=mailbox, folder=folder, uidvalidity=1, uid=uid, message=message, seen=seen))
            if via_team:
                shares.append(ConversationShare(conversation=conversation, team=support, created_by=None))
                if number % 6 == 0 or showcase:
                    assignee = bob if showcase else members[names[1 + number % 5]]  # bob .. frank
                    assignments.append(Assignment(conversation=conversation, membership=assignee, assigned_by=alice))
                    events.append(TimelineEvent(organization=organization, conversation=conversation, actor=alice, kind="assigned",
                                                details={"membership_id": assignee.pk}))  # fmt: skip
                if conversation.status == ConversationStatus.CLOSED:
                    events.append(TimelineEvent(organization=organization, conversation=conversation, actor=bob, kind="closed", details={}))
            if named_share:
                shares.append(ConversationShare(conversation=conversation, membership=carol, created_by=alice))
            if number % 7 == 0 or showcase:
                label = labels[0] if showcase else labels[number % len(labels)]
                labelled.append(ConversationLabel(conversation=conversation, label=label, added_by=alice))
        with transaction.atomic():
            Conversation.objects.bulk_create(conversations)
            Message.objects.bulk_create(messages)
            MessageCopy.objects.bulk_create(copies)
            ConversationShare.objects.bulk_create(shares)
            Assignment.objects.bulk_create(assignments)
            ConversationLabel.objects.bulk_create(labelled)
            TimelineEvent.objects.bulk_create(events)
        conversation_ids.extend(conversation.pk for conversation in conversations)
        if count >= 10_000 and (start // batch) % 10 == 0:
            print(f"  stored {min(count, start + batch):,} / {count:,} conversations", flush=True)

    # Who sees what: the real code, from the copies and shares just stored.
    for start in range(0, len(conversation_ids), 5_000):
        access.access_refresh(conversation_ids[start : start + 5_000])
        if count >= 10_000 and (start // 5_000) % 4 == 0:
            print(f"  access rows for {min(count, start + 5_000):,} / {count:,} conversations", flush=True)
    rows = ConversationMember.objects.filter(organization=organization)
    with transaction.atomic():
        # conversation_close: out of everyone's inbox.
        rows.filter(conversation__status=ConversationStatus.CLOSED, place=Place.INBOX).update(place=Place.ARCHIVE)
        # conversation_assign: into the assignee's inbox, followed, unread until read.
        assigned = Assignment.objects.filter(conversation_id=OuterRef("conversation_id"), membership_id=OuterRef("membership_id"))
        rows.filter(Exists(assigned)).update(place=Place.INBOX, following=True)
        # conversation_read: the team has read all but the newest shared conversations.
        recent = EPOCH + timedelta(minutes=int(count * 0.97))
        rows.filter(via_mailbox=False, last_activity_at__lt=recent).update(unread=False)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    return organization


def describe(organization: Any) -> dict[str, Any]:
    """The members, team, label and conversation the pages are measured with (also for ``--reuse``)."""
    from postroom.conversations.models import Conversation, ConversationStatus, Label
    from postroom.orgs.models import Membership, Team

    def member(name: str) -> Any:
        return Membership.objects.select_related("user").get(organization=organization, user__email__startswith=f"{name}-")

    support = Team.objects.get(organization=organization, name="Support")
    billing = Label.objects.get(organization=organization, name="Billing", owner__isnull=True)
    # What the conversation page shows: a recent, open team conversation with a thread, a label and an assignee.
    showcase = (
        Conversation.objects.filter(organization=organization, status=ConversationStatus.OPEN, message_count__gte=3,
                                    shares__team=support, assignments__isnull=False, label_rows__label=billing)
        .order_by("-last_message_at").first()
    ) or Conversation.objects.filter(organization=organization, shares__team=support).order_by("-last_message_at").first()  # fmt: skip
    return {"organization": organization, "alice": member("alice"), "bob": member("bob"), "team": support, "label": billing,
            "conversation": showcase}  # fmt: skip


def session_cookie(membership: Any) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(membership.user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def api_token(membership: Any) -> str:
    from postroom.accounts.api_tokens import api_token_create

    return str(api_token_create(user=membership.user, name=f"Bench {time.time_ns()}", scope="read", expires_at=None).token)


def pages(seeded: dict[str, Any]) -> dict[str, tuple[str, Any, str]]:
    """name → (path, membership, how it signs in: "" for nobody, "session" or "token")."""
    from django.urls import reverse

    slug = seeded["organization"].slug
    return {
        "health (floor)": ("/health", None, ""),
        "inbox (alice)": (reverse("conversations:list", args=[slug]), seeded["alice"], "session"),
        "team inbox (bob)": (reverse("conversations:team", args=[slug, seeded["team"].pk]), seeded["bob"], "session"),
        "label view (alice)": (reverse("conversations:label", args=[slug, seeded["label"].pk]), seeded["alice"], "session"),
        "conversation page (bob)": (reverse("conversations:detail", args=[slug, seeded["conversation"].pk]), seeded["bob"], "session"),
        "API list (alice)": (f"/api/v1/orgs/{slug}/conversations", seeded["alice"], "token"),
    }


def auth_headers(membership: Any, how: str) -> dict[str, str]:
    if how == "session":
        return {"Cookie": session_cookie(membership)}
    if how == "token":
        return {"Authorization": f"Bearer {api_token(membership)}"}
    return {}


def count_queries(path: str, membership: Any, how: str) -> tuple[int, str]:
    """The SQL queries of one request (after a first one that warms keys and the session), and its body."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", headers=auth_headers(membership, "token") if how == "token" else {})
    if how == "session":
        client.force_login(membership.user, backend="allauth.account.auth_backends.AuthenticationBackend")
    client.get(path)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}")
    return len(captured), response.content.decode()


def check_rendered(seeded: dict[str, Any], name: str, body: str) -> None:
    """The page shows the seeded data: a full page of rows with the newest conversation of the
    view first, or the conversation with its thread, label and assignee."""
    from postroom.conversations import selectors
    from postroom.conversations.selectors import View, ViewFilter

    if name.startswith("health"):
        return
    if name.startswith("conversation"):
        conversation = seeded["conversation"]
        wanted = [conversation.subject, seeded["label"].name, "Dana Customer"]
        missing = [text for text in wanted if text not in body]
        if missing:
            raise RuntimeError(f"{name}: the page lacks {missing}")
        return
    actor, selected = {
        "inbox (alice)": (seeded["alice"], ViewFilter(View.INBOX)),
        "team inbox (bob)": (seeded["bob"], ViewFilter(View.TEAM, team=seeded["team"])),
        "label view (alice)": (seeded["alice"], ViewFilter(View.LABEL, label=seeded["label"])),
        "API list (alice)": (seeded["alice"], ViewFilter(View.INBOX)),
    }[name]
    rows = list(selectors.view_rows(actor=actor, selected=selected).select_related("conversation")[:50])
    newest = rows[0].conversation.subject if rows else None
    shown = sum(row.conversation.subject in body for row in rows)
    if newest is None or newest not in body or shown < len(rows):
        raise RuntimeError(f"{name}: {shown} of {len(rows)} rows shown, newest {newest!r}")


_LATENCY = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, headers: dict[str, str], clients: int, seconds: int) -> dict[str, Any]:
    # wrk's own 2 s timeout would drop the slowest answers from the distribution: wait for them.
    command = [WRK, "--latency", "--timeout", "30s", "-t", "2", "-c", str(clients), "-d", f"{seconds}s"]
    for header, value in headers.items():
        command += ["-H", f"{header}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    latencies = {f"p{match[0]}_ms": round(float(match[1]) * _UNITS[match[2]], 2) for match in _LATENCY.findall(output)}
    requests = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    timeouts = re.search(r"timeout (\d+)", output)
    return {**latencies, "requests_per_second": float(requests[1]) if requests else None, "non_2xx": int(errors[1]) if errors else 0,
            "timeouts": int(timeouts[1]) if timeouts else 0}  # fmt: skip


def server_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the web server and its workers so far: what a request costs
    the server whatever else the shared machine runs (its latency does not say that)."""
    total = 0.0
    pids = [pid, *(int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measured(web_pid: int, target: Any, **options: Any) -> dict[str, Any]:
    """``loadgen.run`` with the server's CPU time per request."""
    before = server_cpu_seconds(web_pid)
    result = loadgen.run(target, **options)
    if result.get("requests"):
        result["server_cpu_ms_per_request"] = round((server_cpu_seconds(web_pid) - before) * 1000 / result["requests"], 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--database-url", required=True, help="a scratch PostgreSQL database (it is filled)")
    parser.add_argument("--reuse", metavar="SLUG,SLUG", help="measure organizations seeded by an earlier run (big, small) instead of seeding")
    parser.add_argument("--clients", type=int, default=50, help="wrk's closed-loop connections")
    parser.add_argument("--users", type=int, default=50, help="open-loop: people, each thinking between pages")
    parser.add_argument("--think", type=float, default=10.0, help="open-loop: mean think time of a person (s)")
    parser.add_argument("--rates", default="1", help="open-loop: constant arrival rates to run (requests/s, comma-separated)")
    parser.add_argument("--seconds", type=int, default=15, help="per page and load model")
    parser.add_argument("--models", default="users,wrk", help="besides --rates: users (think time) and/or wrk (closed loop)")
    parser.add_argument("--drain", type=float, default=15, help="seconds to wait after a page's closed-loop run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pool-size", type=int, default=4, help="POSTROOM_DATABASE_POOL_SIZE per worker")
    parser.add_argument("--pages", help="only these pages (comma-separated prefixes of their names)")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--json", type=Path)
    arguments = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the web server on the way out (finally)

    work = Path(tempfile.mkdtemp(prefix="postroom-inbox-bench-"))
    # The keys that seal the seeded mail live in the data directory: one per database, kept, so
    # that --reuse can read what an earlier run sealed.
    database_name = arguments.database_url.rstrip("/").rsplit("/", 1)[-1]
    data_dir = Path(tempfile.gettempdir()) / f"postroom-inbox-bench-data-{database_name}"
    os.environ.update({
        "POSTROOM_DATA_DIR": os.environ.get("POSTROOM_DATA_DIR", str(data_dir)), "DJANGO_SETTINGS_MODULE": "postroom.settings",
        "DATABASE_URL": arguments.database_url, "POSTROOM_LOG_LEVEL": "WARNING", "POSTROOM_DATABASE_POOL_SIZE": str(arguments.pool_size),
    })  # fmt: skip
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from postroom.orgs.models import Organization

    if arguments.reuse:
        big_slug, small_slug = arguments.reuse.split(",")
        big, small = Organization.objects.get(slug=big_slug), Organization.objects.get(slug=small_slug)
    else:
        rng = random.Random(arguments.seed)
        run_id = f"{os.getpid()}-{int(time.time())}"
        started = time.perf_counter()
        big = seed(arguments.conversations, rng, f"big-{run_id}")
        small = seed(10, rng, f"small-{run_id}")
        print(f"seeded in {time.perf_counter() - started:.0f} s (measure again with --reuse {big.slug},{small.slug})", flush=True)
    from postroom.conversations.models import Conversation, ConversationMember, Message

    counted = {
        "conversations": Conversation.objects.filter(organization=big).count(),
        "messages": Message.objects.filter(organization=big).count(),
        "member_rows": ConversationMember.objects.filter(organization=big).count(),
    }
    print(f"organization {big.slug}: {counted}", flush=True)
    big_seeded, small_seeded = describe(big), describe(small)

    results: dict[str, Any] = {
        "conversations": arguments.conversations, "organization": {"slug": big.slug, **counted}, "clients": arguments.clients,
        "users": arguments.users, "think_s": arguments.think, "seconds": arguments.seconds, "workers": arguments.workers,
        "pool_size": arguments.pool_size,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_before": [round(v, 2) for v in os.getloadavg()]},
        "queries": {}, "pages": {},
    }  # fmt: skip
    big_pages, small_pages = pages(big_seeded), pages(small_seeded)
    if arguments.pages:
        wanted = tuple(arguments.pages.split(","))
        big_pages = {name: page for name, page in big_pages.items() if name.startswith(wanted) or name.startswith("health")}
    for name, (path, membership, how) in big_pages.items():
        at_n, body = count_queries(path, membership, how)
        check_rendered(big_seeded, name, body)
        at_10, _ = count_queries(*small_pages[name])
        results["queries"][name] = {"at_n": at_n, "at_10": at_10}
    print(f"queries per page (at N, at 10): {results['queries']}", flush=True)

    port = free_port()
    log = (work / "web.log").open("wb")
    web = subprocess.Popen(
        [sys.executable, "-m", "postroom", "web", "--port", str(port), "--workers", str(arguments.workers), "--no-migrate"],
        env={**os.environ, "POSTROOM_PUBLIC_URL": f"http://127.0.0.1:{port}"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    rates = [float(rate) for rate in arguments.rates.split(",") if rate]
    models = set(arguments.models.split(","))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the web server did not start; see {work / 'web.log'}")
        for name, (path, membership, how) in big_pages.items():
            headers = auth_headers(membership, how)
            url = f"http://127.0.0.1:{port}{path}"
            target = loadgen.Target("127.0.0.1", port, path, headers)
            warm = loadgen.run(target, model="rate", seconds=2, rate=5)  # every worker has its keys and connections
            if warm["errors"]:
                raise RuntimeError(f"{name}: {url} answered errors: {warm}")
            # Open loop first (it leaves no queue behind when the server keeps up), then closed
            # loop, which does: the server still works through wrk's last requests after wrk
            # stops, so the next page waits for it to drain.
            page: dict[str, Any] = {}
            for rate in rates:
                page[f"open_rate_{rate:g}"] = measured(web.pid, target, model="rate", seconds=arguments.seconds, rate=rate)
            if "users" in models:
                page["open_users"] = measured(web.pid, target, model="users", seconds=arguments.seconds, users=arguments.users,
                                              think=arguments.think)  # fmt: skip
            if "wrk" in models:
                page["closed_loop_wrk"] = run_wrk(url, headers, arguments.clients, arguments.seconds)
                time.sleep(arguments.drain)
            results["pages"][name] = page
            print(f"{name}: {json.dumps(page)}", flush=True)
    finally:
        web.terminate()
        web.wait(timeout=30)
    for model in [key for key in results["pages"]["health (floor)"] if results["pages"]["health (floor)"][key].get("p99_ms")]:
        floor = results["pages"]["health (floor)"][model]["p99_ms"]
        results[f"{model}_p99_over_floor"] = {name: round(page[model].get("p99_ms", 0) / floor, 2) for name, page in results["pages"].items()}
    results["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results, indent=2), flush=True)
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
