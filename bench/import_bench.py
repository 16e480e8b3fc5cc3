"""Postroom's first import and new-mail latency against mbsync, on one throwaway Dovecot.

Not a test (nothing here asserts a time). Run from the worktree root:

    .venv/bin/python bench/import_bench.py --messages 20000 [--database-url postgres://…] [--json out.json]

What it does, in one run:

1. Writes N seeded messages (plain text in several charsets, HTML alternatives, PDF
   attachments, threads of one to six messages, about 30 KB on average) straight into the
   Maildir of a new user of a throwaway Dovecot on loopback (``postroom.testing.dovecot``),
   then lets Dovecot index it once (``doveadm mailbox status``) so neither client pays for that.
2. Times ``mbsync`` (isync, default ``FSync yes``) pulling INBOX into a Maildir over IMAPS,
   and then Postroom importing the same INBOX with ``postroom sync`` and ``postroom worker``
   (subprocesses, as ``postroom run`` starts them; their own ``POSTROOM_DATA_DIR``, SQLite unless
   ``--database-url`` is given): the import is done when every message has a stored copy (it is
   threaded and in the conversation list); the body pass (texts, snippets, attachments, run by
   the worker) when no message is left waiting for it. Reports both rates, and the peak resident
   set size of every Postroom process (``VmHWM``, sampled, of sync, worker and their parser
   processes; ``ru_maxrss`` from ``wait4`` for sync and worker).
3. With those same processes idling on INBOX, appends ``--latency-samples`` messages over
   IMAP one at a time, each a random ``--latency-gap`` (0.1–0.6 s) after the previous one was
   published, and measures APPEND sent → copy stored in the
   database, and APPEND sent → its live event published (a row of the database bus), both
   polled every 5 ms: p50, p95 and max.
4. Prints the figures and ratios and writes them as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trustme
from mime_parse import GREETINGS, WORDS, add_trace_and_body

from postroom.testing.dovecot import Dovecot, MailUser

MBSYNC = "/usr/bin/mbsync"
STORED_POLL_SECONDS = 0.5
LATENCY_POLL_SECONDS = 0.005
EPOCH = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


# --- the mailbox ---------------------------------------------------------------------------------
def build_message(rng: random.Random, number: int, thread_start: int, sent_at: datetime, seed: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"{rng.choice(GREETINGS)} Sender <sender{rng.randrange(97)}@example.org>"
    message["To"] = ", ".join(f"Person {i} <p{i}@example.com>" for i in range(rng.randint(1, 4)))
    prefix = "Re: " if number > thread_start else ""
    message["Subject"] = f"{prefix}{rng.choice(GREETINGS)} about {WORDS[thread_start % len(WORDS)]} #{thread_start}"
    message["Message-ID"] = f"<{number}.{seed}@example.org>"
    if number > thread_start:
        message["In-Reply-To"] = f"<{number - 1}.{seed}@example.org>"
        message["References"] = " ".join(f"<{n}.{seed}@example.org>" for n in range(thread_start, number))
    message["Date"] = format_datetime(sent_at)
    add_trace_and_body(message, rng, number)
    return bytes(message)


def write_maildir(dovecot: Dovecot, user: MailUser, count: int, seed: int, source: Path | None = None) -> int:
    """The user's INBOX as a Maildir written before Dovecot first looks at it; returns its bytes.

    With ``source``, the messages are copied from the ``cur`` folder of a Maildir an earlier run
    wrote (with the same N and seed): generating them takes minutes on a busy machine."""
    home = dovecot.root / "mail" / user.name
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    if source is not None:
        names = sorted(os.listdir(source / "cur"))[:count]
        for name in names:
            shutil.copy2(source / "cur" / name, maildir / "cur" / name)
        _give_to_dovecot(dovecot, home)
        return sum((maildir / "cur" / name).stat().st_size for name in names)
    rng = random.Random(seed)
    total = 0
    thread_start = 0
    thread_left = 0
    for number in range(count):
        if thread_left == 0:
            thread_start, thread_left = number, rng.randint(1, 6)
        thread_left -= 1
        sent_at = EPOCH + timedelta(minutes=7 * number)
        raw = build_message(rng, number, thread_start, sent_at, seed).replace(b"\r\n", b"\n")
        flags = "S" if rng.random() < 0.7 else ""
        path = maildir / "cur" / f"{int(sent_at.timestamp())}.M{number}P1.bench,S={len(raw)}:2,{flags}"
        path.write_bytes(raw)
        os.utime(path, (sent_at.timestamp(), sent_at.timestamp()))  # Maildir's INTERNALDATE
        total += len(raw)
    _give_to_dovecot(dovecot, home)
    return total


def _give_to_dovecot(dovecot: Dovecot, home: Path) -> None:
    uid, gid = dovecot._mail_uid, dovecot._mail_gid
    for directory, _subdirectories, files in os.walk(home):
        os.chown(directory, uid, gid)
        for name in files:
            os.chown(os.path.join(directory, name), uid, gid)


def new_mail(rng: random.Random, number: int, seed: int) -> bytes:
    return build_message(rng, number, number, datetime.now(UTC), seed)


# --- processes -----------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process, in MB (None once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process so far (None once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_with_rusage(process: subprocess.Popen[bytes]) -> float:
    """Reap ``process``; its own peak RSS (ru_maxrss, KB on Linux) in MB."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def run_mbsync(dovecot: Dovecot, user: MailUser, work: Path, count: int) -> dict[str, Any]:
    ca_file = work / "ca.pem"
    ca_file.write_text(dovecot.ca_pem)
    store = work / "mbsync-maildir"
    store.mkdir()
    config = work / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount bench
Host {dovecot.host}
Port {dovecot.imaps_port}
User {user.name}
Pass {user.password}
SSLType IMAPS
CertificateFile {ca_file}

IMAPStore remote
Account bench

MaildirStore local
Path {store}/
Inbox {store}/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
"""
    )
    config.chmod(0o600)
    started = time.perf_counter()
    process = subprocess.Popen([MBSYNC, "-q", "-c", str(config), "-a"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = wait_with_rusage(process)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"mbsync failed: {process.stderr.read().decode(errors='replace') if process.stderr else ''}")
    stored = sum(len(os.listdir(store / "INBOX" / sub)) for sub in ("cur", "new"))
    if stored != count:
        raise RuntimeError(f"mbsync stored {stored} of {count} messages")
    shutil.rmtree(store)
    return {"seconds": round(seconds, 2), "messages_per_second": round(count / seconds, 1), "peak_rss_mb": round(peak, 1)}


# --- Postroom ------------------------------------------------------------------------------------
def postroom_setup(dovecot: Dovecot, user: MailUser) -> Any:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from postroom.accounts.models import User
    from postroom.mailboxes.models import AuthKind, Mailbox, TlsModeChoice
    from postroom.orgs.models import Membership, Organization
    from postroom.orgs.policy import Role

    organization = Organization.objects.create(name="Bench", slug=f"bench-{os.getpid()}")
    owner = Membership.objects.create(
        organization=organization, user=User.objects.create_user(f"bench{os.getpid()}@example.test"), role=Role.OWNER
    )
    mailbox = Mailbox(
        organization=organization, owner=owner, name=user.name, email_address=user.address,
        imap_host=dovecot.host, imap_port=dovecot.imaps_port, imap_tls=TlsModeChoice.IMPLICIT,
        smtp_host=dovecot.host, smtp_port=25, private_ca_pem=dovecot.ca_pem, auth_kind=AuthKind.PASSWORD,
    )  # fmt: skip
    mailbox.credentials = {"username": user.name, "password": user.password}
    mailbox.save()
    return mailbox


def stored_copies(mailbox: Any) -> int:
    from postroom.conversations.models import MessageCopy

    return int(MessageCopy.objects.filter(mailbox=mailbox, folder__role="inbox").count())


def bodies_pending(mailbox: Any) -> int:
    from postroom.conversations.models import Message

    return int(Message.objects.filter(organization_id=mailbox.organization_id, body_pending=True).count())


class ProcessTree:
    """Peak RSS (VmHWM) of each Postroom process: the ones started here and their children (the
    parser processes), sampled while they run; ``ru_maxrss`` of the started ones when reaped."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.names: dict[int, str] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of each process, at its last sample

    def add(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.names[process.pid] = name

    def sample(self) -> None:
        for pid, name in list(self.names.items()):
            for child in children_of(pid):
                # Only once it runs the parser: between fork and exec a child still shows its parent's peak.
                if child not in self.names and b"postroom.mime.isolation" in _command_line(child):
                    self.names[child] = f"{name}/parser-{child}"
        for pid, name in self.names.items():
            peak = peak_rss_mb(pid)
            if peak is not None:
                self.peaks[name] = max(self.peaks.get(name, 0.0), peak)
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu[name] = cpu

    def report(self) -> dict[str, float]:
        return {name: round(peak, 1) for name, peak in sorted(self.peaks.items())}


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def children_of(pid: int) -> list[int]:
    try:
        return [
            int(child)
            for task in os.listdir(f"/proc/{pid}/task")
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return []


def measure_import(mailbox: Any, count: int, log_file: Path, tree: ProcessTree) -> tuple[list[subprocess.Popen[bytes]], dict[str, Any]]:
    """``postroom sync`` and ``postroom worker`` (which runs the body pass), as ``postroom run``
    starts them: the import is done when every message has a copy (it is in the list, threaded);
    the bodies when the body pass has been through every message."""
    started = time.perf_counter()
    log = log_file.open("wb")
    processes = []
    for role in ("sync", "worker"):
        process = subprocess.Popen([sys.executable, "-m", "postroom", role], stdout=log, stderr=subprocess.STDOUT)
        tree.add(role, process)
        processes.append(process)
    progress = []
    imported_seconds = None
    cpu_at_import: dict[str, float] = {}
    while True:
        time.sleep(STORED_POLL_SECONDS)
        tree.sample()
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"postroom exited with {process.returncode}; see {log_file}")
        stored = stored_copies(mailbox) if imported_seconds is None else count
        elapsed = time.perf_counter() - started
        if stored >= count and imported_seconds is None:
            imported_seconds = elapsed
            cpu_at_import = {name: round(seconds, 1) for name, seconds in sorted(tree.cpu.items())}
        pending = bodies_pending(mailbox)
        if not progress or elapsed - progress[-1][0] >= 10:
            progress.append((round(elapsed, 1), stored, pending))
            peaks = ", ".join(f"{name} {peak:.0f}" for name, peak in tree.report().items())
            print(f"  postroom: {stored}/{count} stored, {pending} bodies pending after {elapsed:.0f} s; peak RSS MB: {peaks}", flush=True)
        if imported_seconds is not None and pending == 0:
            break
    seconds = time.perf_counter() - started
    assert imported_seconds is not None
    return processes, {
        "seconds": round(imported_seconds, 2),
        "messages_per_second": round(count / imported_seconds, 1),
        "bodies_seconds": round(seconds, 2),
        "bodies_per_second": round(count / seconds, 1),
        "load_average_after_import": [round(value, 2) for value in os.getloadavg()],
        # CPU seconds of each process when the import was done, and when the body pass was (sampled every 0.5 s)
        "cpu_seconds_at_import": cpu_at_import,
        "cpu_seconds_at_bodies_done": {name: round(seconds, 1) for name, seconds in sorted(tree.cpu.items())},
        "progress": progress,
    }


def measure_latency(
    dovecot: Dovecot, user: MailUser, mailbox: Any, samples: int, seed: int, gap: tuple[float, float] = (0.1, 0.6)
) -> dict[str, Any]:
    from django.db.models import Max

    from postroom.conversations.models import MessageCopy
    from postroom.live.models import LiveEvent
    from postroom.mailboxes.models import Folder

    rng = random.Random(seed + 1)
    latencies = []
    published = []
    # By folder and UID: the unique index answers at once, however many copies there are (this
    # runs every 5 ms beside the process being measured).
    inbox = Folder.objects.get(mailbox=mailbox, role="inbox")
    time.sleep(3)  # the service leaves the import loop and enters IDLE
    with dovecot.connect(user) as client:
        for sample in range(samples):
            raw = new_mail(rng, 10_000_000 + sample, seed)
            last_event = LiveEvent.objects.aggregate(top=Max("id"))["top"] or 0
            sent = time.perf_counter()
            response = client.append("INBOX", raw)
            code = response.decode() if isinstance(response, bytes) else str(response)
            uid = int(code.split("]")[0].split()[-1])
            deadline = sent + 180
            conversation_id = None
            while True:
                if conversation_id is None:
                    copy = MessageCopy.objects.filter(folder=inbox, uidvalidity=inbox.uidvalidity, uid=uid).select_related("message").first()
                    if copy is not None:
                        latencies.append(time.perf_counter() - sent)
                        conversation_id = copy.message.conversation_id
                # Then the live event the web processes pass on to open pages (the database bus: a row).
                if conversation_id is not None and LiveEvent.objects.filter(
                    id__gt=last_event, conversation_id=conversation_id, kind="message_added"
                ).exists():
                    published.append(time.perf_counter() - sent)
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"message UID {uid} not stored and published within 180 s")
                time.sleep(LATENCY_POLL_SECONDS)
            time.sleep(rng.uniform(*gap))
    return {"samples": samples, "gap_seconds": list(gap), **_spread(latencies), "published": _spread(published)}


def _gap(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    return low, high


def _spread(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "p50_seconds": round(statistics.median(ordered), 3),
        "p95_seconds": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 3),
        "max_seconds": round(ordered[-1], 3),
        "over_one_second": sum(1 for latency in ordered if latency > 1.0),
        "all_seconds": [round(latency, 3) for latency in latencies],
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "dovecot": subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True, check=False).stdout.strip(),
        "mbsync": subprocess.run([MBSYNC, "--version"], capture_output=True, text=True, check=False).stdout.strip(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument(
        "--latency-gap",
        default="0.1,0.6",
        help="MIN,MAX seconds between a message stored and the next APPEND (e.g. 0,0.05 to land them while the sync loop re-enters IDLE)",
    )
    parser.add_argument("--database-url", default="", help="PostgreSQL for Postroom (default: SQLite in the temporary data directory)")
    parser.add_argument("--json", type=Path, help="where to write the results (default: print only)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (the sync log is in it)")
    parser.add_argument("--maildir-from", type=Path, help="copy the messages from this Maildir (an earlier run's, same N and seed)")
    parser.add_argument("--no-mbsync", action="store_true", help="measure Postroom alone (e.g. for its RSS at a large N)")
    arguments = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="postroom-bench-"))
    os.environ["POSTROOM_DATA_DIR"] = str(work / "data")
    os.environ["DJANGO_SETTINGS_MODULE"] = "postroom.settings"
    os.environ.setdefault("POSTROOM_LOG_LEVEL", "WARNING")
    if arguments.database_url:
        os.environ["DATABASE_URL"] = arguments.database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    results: dict[str, Any] = {
        "messages": arguments.messages,
        "seed": arguments.seed,
        "database": "postgresql" if arguments.database_url else "sqlite",
    }
    results["machine"] = machine()
    dovecot = Dovecot(ca=trustme.CA())
    processes: list[subprocess.Popen[bytes]] = []
    try:
        user = dovecot.create_user("bench")
        started = time.perf_counter()
        size = write_maildir(dovecot, user, arguments.messages, arguments.seed, arguments.maildir_from)
        results["mailbox_bytes"] = size
        results["average_message_kb"] = round(size / arguments.messages / 1024, 1)
        print(
            f"mailbox: {arguments.messages} messages, {size / 2**20:.0f} MB, written in {time.perf_counter() - started:.0f} s", flush=True
        )
        dovecot.start()
        status = dovecot.doveadm("mailbox", "status", "-u", user.name, "messages", "INBOX")
        if f"messages={arguments.messages}" not in status:
            raise RuntimeError(f"Dovecot sees {status.strip()}")

        if not arguments.no_mbsync:
            results["mbsync"] = run_mbsync(dovecot, user, work, arguments.messages)
            print(f"mbsync: {results['mbsync']}", flush=True)

        mailbox = postroom_setup(dovecot, user)
        tree = ProcessTree()
        processes, results["postroom_import"] = measure_import(mailbox, arguments.messages, work / "sync.log", tree)
        print(f"postroom import: { {k: v for k, v in results['postroom_import'].items() if k != 'progress'} }", flush=True)

        if arguments.latency_samples:
            results["new_mail_latency"] = measure_latency(
                dovecot, user, mailbox, arguments.latency_samples, arguments.seed, gap=_gap(arguments.latency_gap)
            )
            print(f"new-mail latency: {results['new_mail_latency']}", flush=True)

        tree.sample()
        results["postroom_import"]["peak_rss_mb"] = tree.report()
        ru_maxrss = {}
        for name, process in zip(("sync", "worker"), processes, strict=True):
            process.send_signal(signal.SIGTERM)
            ru_maxrss[name] = round(wait_with_rusage(process), 1)
        results["postroom_import"]["ru_maxrss_mb"] = ru_maxrss
        processes = []
        if "mbsync" in results:
            results["ratios"] = {
                "postroom_over_mbsync_rate": round(
                    results["postroom_import"]["messages_per_second"] / results["mbsync"]["messages_per_second"], 3
                ),
            }
        print(
            json.dumps(
                {key: results[key] for key in ("ratios", "mbsync", "postroom_import", "new_mail_latency") if key in results}, indent=2
            )
        )
        if arguments.json:
            arguments.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        dovecot.close()
        if arguments.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
