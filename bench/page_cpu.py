"""CPU and Python calls per request of the inbox pages, in process (issue #4).

Not a test. Runs Django's test client against an organization seeded by ``inbox_bench.py``
(``--reuse`` slugs, the same database and data directory), so the figures are the web worker's
own work without the server, the network or the neighbours' scheduling:

    .venv/bin/python bench/page_cpu.py --database-url postgres://postgres@127.0.0.1:5432/h_inbox_bench \
        --slug big-… --requests 40 [--dump /tmp/pages-branch]

Per page: the CPU time (``time.process_time``) of ``--requests`` requests after ``--warm-ups``,
the SQL queries and the Python function calls of one request under cProfile. ``--dump`` writes
each page's body with its CSRF tokens and nonces blanked out, to compare two versions byte for
byte against the same data. Run it from an export of another version (its own ``bench/``) to
measure that version with the same venv.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import gc
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import inbox_bench  # bench/inbox_bench.py, beside this file

# Per request: CSRF tokens (forms and htmx's header), CSP nonces, the live stream's signed cursor.
VOLATILE = re.compile(r'(name="csrfmiddlewaretoken" value="|nonce="|"X-CSRFToken": "|data-live-after=")[^"]*"')


def page_paths(seeded: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """name → (path, membership): the bench's list pages and every other view, a later page and the conversation page."""
    from django.urls import reverse

    slug = seeded["organization"].slug
    alice, bob = seeded["alice"], seeded["bob"]
    paths = {
        "inbox (alice)": (reverse("conversations:list", args=[slug]), alice),
        "team inbox (bob)": (reverse("conversations:team", args=[slug, seeded["team"].pk]), bob),
        "label view (alice)": (reverse("conversations:label", args=[slug, seeded["label"].pk]), alice),
    }
    for view in ("assigned", "mentions", "tasks", "sent", "snoozed", "closed", "all", "spam", "trash"):
        paths[f"{view} (bob)"] = (reverse(f"conversations:view_{view}", args=[slug]), bob)
    paths["tasks of alice (bob)"] = (f"{reverse('conversations:view_tasks', args=[slug])}?assignee={alice.pk}", bob)
    paths["conversation page (bob)"] = (reverse("conversations:detail", args=[slug, seeded["conversation"].pk]), bob)
    return paths


def _count(captured: list[str], execute: Any, sql: str, *rest: Any) -> Any:
    """An execute wrapper: note each query of the request."""
    captured.append(sql)
    return execute(sql, *rest)


def _time(waits: dict[str, list[float]], execute: Any, sql: str, *rest: Any) -> Any:
    """An execute wrapper: how long each query took to answer, by its text."""
    started = time.perf_counter()
    try:
        return execute(sql, *rest)
    finally:
        waits.setdefault(" ".join(sql.split())[:100], []).append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--slug", required=True, help="the big organization seeded by inbox_bench.py")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--warm-ups", type=int, default=3)
    parser.add_argument("--pages", help="only these pages (comma-separated prefixes of their names)")
    parser.add_argument("--dump", type=Path, help="write each page's body here (tokens and nonces blanked)")
    parser.add_argument("--show-queries", action="store_true", help="print each page's SQL, one line per query")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N functions of most own time")
    parser.add_argument("--areas", type=int, default=0, metavar="N", help="print the N areas (package or module) of most own CPU time, over the timed requests")
    parser.add_argument("--gc", action="store_true", help="report the cyclic collector's runs (per generation: count, total and longest) over the timed requests")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.collect() and gc.freeze() after the warm-ups, as postroom web does after its first requests")
    parser.add_argument("--callers", default="", metavar="PATTERN", help="print who calls the functions whose file:line(name) matches PATTERN (a regular expression)")
    parser.add_argument("--profile-sort", default="tottime", help="pstats order for --profile: tottime (own time), cumulative, calls…")
    parser.add_argument("--query-times", action="store_true", help="time the database's answer to each query (wall) in the timed requests")
    parser.add_argument(
        "--no-prepare", action="store_true", help="PostgreSQL: client-side binding, no prepared statements (Django's default)"
    )
    arguments = parser.parse_args()
    database_name = arguments.database_url.rstrip("/").rsplit("/", 1)[-1]
    os.environ.update({
        "POSTROOM_DATA_DIR": str(Path(tempfile.gettempdir()) / f"postroom-inbox-bench-data-{database_name}"),
        "DJANGO_SETTINGS_MODULE": "postroom.settings", "DATABASE_URL": arguments.database_url, "POSTROOM_LOG_LEVEL": "WARNING",
    })  # fmt: skip
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    if arguments.no_prepare:
        settings.DATABASES["default"]["OPTIONS"].update(server_side_binding=False, prepare_threshold=None)
    from django.test import Client

    import postroom
    from postroom.orgs.models import Organization

    print(f"postroom from {Path(postroom.__file__).parent}, load average {os.getloadavg()[0]:.1f}", flush=True)
    seeded = inbox_bench.describe(Organization.objects.get(slug=arguments.slug))
    paths = page_paths(seeded)
    if arguments.pages:
        paths = {name: page for name, page in paths.items() if name.startswith(tuple(arguments.pages.split(",")))}
    if arguments.dump:
        arguments.dump.mkdir(parents=True, exist_ok=True)
    for name, (path, membership) in paths.items():
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(membership.user, backend="allauth.account.auth_backends.AuthenticationBackend")
        for _ in range(arguments.warm_ups):
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
        if arguments.dump:
            body = VOLATILE.sub(r'\1"', response.content.decode())
            (arguments.dump / f"{re.sub(r'[^a-z]+', '-', name).strip('-')}.html").write_text(body)
        if arguments.gc_freeze:
            gc.collect()
            gc.freeze()
        captured: list[str] = []
        with connection.execute_wrapper(functools.partial(_count, captured)):
            client.get(path)
        profile = cProfile.Profile()
        profile.enable()
        client.get(path)
        profile.disable()
        calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
        waits: dict[str, list[float]] = {}
        timing = connection.execute_wrapper(functools.partial(_time, waits)) if arguments.query_times else contextlib.nullcontext()
        walls = []
        areas = cProfile.Profile(time.process_time) if arguments.areas else None
        collections = _Collections() if arguments.gc else contextlib.nullcontext()
        with timing, (areas or contextlib.nullcontext()), collections:
            started = time.process_time()
            for _ in range(arguments.requests):
                wall = time.perf_counter()
                client.get(path)
                walls.append(time.perf_counter() - wall)
            cpu_ms = (time.process_time() - started) * 1000 / arguments.requests
        wall_ms = statistics.median(walls) * 1000
        print(
            f"{name:26} {cpu_ms:6.1f} ms CPU/request  {wall_ms:6.1f} ms wall (median)  {calls:8,} calls  {len(captured):3} queries",
            flush=True,
        )
        if arguments.query_times:
            total = sum(sum(times) for times in waits.values()) * 1000 / arguments.requests
            print(f"    database {total:.1f} ms a request (wall, CPU of the client included); the costliest:")
            for sql, times in sorted(waits.items(), key=lambda item: -sum(item[1]))[:8]:
                print(f"    {sum(times) * 1000 / arguments.requests:6.2f} ms  {sql}")
        if arguments.show_queries:
            for sql in captured:
                print(f"    {' '.join(sql.split())[:160]}")
        if isinstance(collections, _Collections):
            collections.print(arguments.requests)
        if areas is not None:
            _print_areas(areas, arguments.areas, arguments.requests)
        if arguments.callers:
            pstats.Stats(profile).sort_stats("tottime").print_callers(arguments.callers)
        if arguments.profile:
            pstats.Stats(profile).sort_stats(arguments.profile_sort).print_stats(arguments.profile)
    print(f"load average after {os.getloadavg()[0]:.1f}", flush=True)
    return 0


class _Collections(contextlib.ContextDecorator):
    """The cyclic collector's runs while it is entered: per generation, how many, how long."""

    def __init__(self) -> None:
        self.runs: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.runs[info["generation"]].append(time.perf_counter() - self.started)

    def __enter__(self) -> _Collections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def print(self, requests: int) -> None:
        total = sum(sum(runs) for runs in self.runs.values())
        print(f"    collector: {total * 1000 / requests:.2f} ms a request (wall) in all; per generation:")
        for generation, runs in self.runs.items():
            print(f"    gen {generation}: {len(runs):4} runs, {sum(runs) * 1000:8.1f} ms, longest {max(runs, default=0) * 1000:6.1f} ms")


def _area(filename: str, function: str) -> str:
    """Where a function's own time is counted: a package's module family (django/template,
    psycopg), one of our modules, or the C function's name for builtins."""
    if filename == "~":
        return function.split(" of ")[0].strip("<>{}")[:48]
    if "site-packages/" in filename:
        parts = filename.split("site-packages/", 1)[1].split("/")
        return "/".join(parts[:2]).removesuffix(".py")
    if "/postroom/" in filename:
        return "postroom/" + filename.rsplit("/postroom/", 1)[1].removesuffix(".py")
    return "python/" + Path(filename).name.removesuffix(".py")


def _print_areas(profile: cProfile.Profile, count: int, requests: int) -> None:
    totals: dict[str, float] = {}
    for (filename, _line, function), (_calls, _primitive, own, _cumulative, _callers) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        area = _area(filename, function)
        totals[area] = totals.get(area, 0.0) + own
    whole = sum(totals.values())
    print(f"    own CPU by area (profiled, {whole * 1000 / requests:.1f} ms a request under the profiler):")
    for area, own in sorted(totals.items(), key=lambda item: -item[1])[:count]:
        print(f"    {own * 1000 / requests:6.2f} ms {own * 100 / whole:5.1f} %  {area}")


if __name__ == "__main__":
    sys.exit(main())
