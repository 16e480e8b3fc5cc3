"""The ``postroom`` command.

    postroom run [--host H] [--port P]   everything in one supervised process (embedded shape)
    postroom web [--host H] [--port P] [--workers N]   the ASGI web server only
    postroom worker                      the task worker only
    postroom sync                        the mail sync service only (several may share a database)
    postroom setup-token                 print a new one-time setup link (only before setup)
    postroom keys rotate                 new master key; re-wrap every data key online
    postroom audit verify                check the audit log's hash chain
    postroom import-mailbox PATH --mailbox ID   import an mbox file or Maildir (resumable)
    postroom manage <command> …          any Django management command

A configuration error, whenever it surfaces (reading the settings, connecting to the database),
ends the command with exit code 2 and one line on stderr that names the variable and the fix,
instead of a traceback. Every file the process creates is private to its user (umask 077): the
database, its WAL, blobs and keys hold the organization's data.
"""

from __future__ import annotations

import argparse
import os
import sys


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")
    import django

    django.setup()


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import OperationalError

    from postroom.core.env import ConfigError

    try:
        call_command("migrate", interactive=False, verbosity=0)
    except OperationalError as error:
        raise ConfigError("DATABASE_URL", f"the database cannot be used ({str(error).strip().splitlines()[0]})", "check the address, credentials and that the server is running") from None


def _print_setup_link() -> None:
    from django.conf import settings

    from postroom.accounts.actions import setup_token_issue

    token = setup_token_issue()
    if token:
        print(
            "\n  Postroom is not set up yet. Open this one-time link to create your organization:\n\n"
            f"    {settings.PUBLIC_URL}/setup/?token={token}\n",
            flush=True,
        )


def command_run(arguments: argparse.Namespace) -> int:
    from postroom.supervisor import Child, Supervisor, role_command

    # The printed links and CSRF origin follow the chosen address unless a public URL is set.
    os.environ.setdefault("POSTROOM_PUBLIC_URL", f"http://{arguments.host}:{arguments.port}")
    _django()
    _migrate()
    _print_setup_link()
    children = [
        Child("web", role_command("web", "--host", arguments.host, "--port", str(arguments.port), "--no-migrate")),
        Child("worker", role_command("worker")),
        Child("sync", role_command("sync")),
    ]
    print(f"postroom: serving on http://{arguments.host}:{arguments.port} — Ctrl-C stops everything", flush=True)
    return Supervisor(children).run()


def command_web(arguments: argparse.Namespace) -> int:
    import uvicorn

    os.environ.setdefault("POSTROOM_PUBLIC_URL", f"http://{arguments.host}:{arguments.port}")
    _django()
    if not arguments.no_migrate:
        _migrate()
    from django.conf import settings

    uvicorn.run(
        "postroom.asgi:server_application",
        factory=True,
        host=arguments.host,
        port=arguments.port,
        server_header=False,
        date_header=True,
        proxy_headers=bool(settings.TRUSTED_PROXY_COUNT),
        forwarded_allow_ips=os.environ.get("POSTROOM_FORWARDED_ALLOW_IPS", "127.0.0.1"),
        log_level="warning",
        lifespan="off",
        workers=getattr(arguments, "workers", 1),
        # Live-update streams never finish on their own: on shutdown, give requests a moment,
        # then close the streams (pages reconnect to the next server and resume).
        timeout_graceful_shutdown=3,
    )
    return 0


def command_worker(arguments: argparse.Namespace) -> int:
    _django()
    from django.conf import settings
    from django.core.management import call_command

    if settings.REDIS_URL:
        call_command("rqworker", "default", job_class="django_tasks_rq.Job")
    else:
        call_command("db_worker", queue_name="default", interval=0.5)
    return 0


def command_sync(arguments: argparse.Namespace) -> int:
    import gc
    import signal

    _django()
    from postroom.sync.service import SyncService

    service = SyncService(max_mailboxes=arguments.max_mailboxes, lease_seconds=arguments.lease_seconds)
    # What start-up made (Django, the apps, their modules: most of the heap) lives as long as the
    # process: left out of the cyclic collector, whose full collections, run by whichever thread
    # allocates, would otherwise walk it again and again while a first import stores its batches.
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGTERM, lambda signum, frame: service.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: service.stop())
    service.run()
    return 0


def command_setup_token(arguments: argparse.Namespace) -> int:
    _django()
    # Often the very first command on a new install: the tables it needs may not exist yet.
    _migrate()
    _print_setup_link()
    from postroom.accounts.actions import setup_needed

    if not setup_needed():
        print("Postroom is already set up; there is no setup link.", file=sys.stderr)
        return 1
    return 0


def command_keys(arguments: argparse.Namespace) -> int:
    _django()
    from postroom.audit.actions import audit_record
    from postroom.core.keys import rotate_master_key

    def progress(done: int, total: int) -> None:
        print(f"\r  re-wrapping data keys: {done}/{total}", end="", flush=True)

    key_id, count = rotate_master_key(progress)
    print(f"\nNew master key {key_id} is current; {count} data key(s) re-wrapped.")
    print("Keep the old keys in the key file until every process has restarted, then remove them.")
    audit_record(action="keys.master_rotated", details={"master_key_id": key_id, "data_keys": count})
    return 0


def command_audit(arguments: argparse.Namespace) -> int:
    _django()
    from postroom.audit.actions import audit_verify_chain

    report = audit_verify_chain()
    if report.intact:
        print(f"Audit log intact: {report.checked} event(s) checked.")
        return 0
    where = f" at event {report.broken_at}" if report.broken_at else ""
    print(f"Audit log BROKEN{where}: {report.reason} ({report.checked} event(s) verified before it).", file=sys.stderr)
    return 3


def command_import_mailbox(arguments: argparse.Namespace) -> int:
    _django()
    from django.core.management import call_command
    from django.core.management.base import CommandError

    try:
        call_command("import_mailbox", arguments.path, mailbox=arguments.mailbox)
    except CommandError as error:
        print(f"postroom import-mailbox: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from postroom.core.env import ConfigError

    os.umask(0o077)
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except ConfigError as error:
        print(f"postroom: configuration error — {error}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["manage"]:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(["postroom manage", *argv[1:]])
        return 0
    parser = argparse.ArgumentParser(prog="postroom", description="Postroom, the self-hostable shared inbox.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler in (("run", command_run), ("web", command_web)):
        sub = commands.add_parser(name)
        sub.add_argument("--host", default=os.environ.get("POSTROOM_HOST", "127.0.0.1"))
        sub.add_argument("--port", type=int, default=int(os.environ.get("POSTROOM_PORT", "8000")))
        if name == "web":
            sub.add_argument("--no-migrate", action="store_true", help=argparse.SUPPRESS)
            sub.add_argument(
                "--workers", type=int, default=int(os.environ.get("POSTROOM_WEB_WORKERS", "1")),
                help="web processes (Django runs each request's database work on one thread per process: use one per core)",
            )  # fmt: skip
        sub.set_defaults(handler=handler)
    commands.add_parser("worker").set_defaults(handler=command_worker)
    sync = commands.add_parser("sync", help="keep the connected mailboxes in sync with their servers")
    sync.add_argument("--max-mailboxes", type=int, default=int(os.environ.get("POSTROOM_SYNC_MAX_MAILBOXES", "100")), help="mailboxes this process syncs at most")
    sync.add_argument("--lease-seconds", type=float, default=60.0, help="how long a crashed service keeps its mailboxes (default 60)")
    sync.set_defaults(handler=command_sync)
    commands.add_parser("setup-token").set_defaults(handler=command_setup_token)
    keys = commands.add_parser("keys")
    keys.add_argument("action", choices=["rotate"])
    keys.set_defaults(handler=command_keys)
    audit = commands.add_parser("audit")
    audit.add_argument("action", choices=["verify"])
    audit.set_defaults(handler=command_audit)
    import_mailbox = commands.add_parser("import-mailbox", help="import an mbox file or a Maildir into a mailbox")
    import_mailbox.add_argument("path")
    import_mailbox.add_argument("--mailbox", required=True, help="the mailbox's id")
    import_mailbox.set_defaults(handler=command_import_mailbox)
    manage = commands.add_parser("manage", help="run a Django management command")
    manage.set_defaults(handler=None)
    arguments = parser.parse_args(argv)
    return int(arguments.handler(arguments))
