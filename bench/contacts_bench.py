"""Contacts at size: importing a big CSV, and composer autocomplete over a big book.

Not a test (nothing here asserts a time). Run from the repository root, against a scratch
database (it is migrated and filled; use a name of its own):

    .venv/bin/python bench/contacts_bench.py --contacts 5000 \
        --database-url postgres://postgres@127.0.0.1:5432/h_contacts_bench

1. Imports ``--contacts`` rows of CSV into a member's book through ``transfer.book_import`` (the
   path the import page takes), wall time and rows per second.
   Then the same rows into a second book through the background path (``book_import_start``
   queues a ``ContactImport``; ``book_import_run`` is the task's body, chunk by chunk with its
   progress recorded), and the ratio of the two times (run 3 times, medians).
2. Runs ``contacts_autocomplete`` (which decrypts the visible cards, up to its scan cap) for
   ``--queries`` prefixes and reports the median and the 90th percentile, and the same for an
   exact address (found through its blind index).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--database-url", required=True, help="a scratch database (it is filled)")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="postroom-contacts-bench-"))
    os.environ.update({
        "POSTROOM_DATA_DIR": str(work / "data"), "DJANGO_SETTINGS_MODULE": "postroom.settings", "DATABASE_URL": arguments.database_url,
        "POSTROOM_LOG_LEVEL": "WARNING",
    })  # fmt: skip
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from postroom.accounts.models import User
    from postroom.contacts import actions, selectors, transfer
    from postroom.orgs.models import Membership, Organization

    run_id = f"{os.getpid()}-{int(time.time())}"
    organization = Organization.objects.create(name="Bench", slug=f"bench-{run_id}")
    user = User.objects.create_user(email=f"bench-{run_id}@example.test", password=None)
    member = Membership.objects.create(organization=organization, user=user, role="owner")
    book = actions.book_default(actor=member)
    lines = ["name,email,phone,company"] + [
        f"Person {number} Example,person{number}@example.org,+1 555 {number:06d},Company {number % 97}"
        for number in range(arguments.contacts)
    ]
    started = time.perf_counter()
    report = transfer.book_import(actor=member, book=book, content="\r\n".join(lines).encode(), file_format="csv")
    elapsed = time.perf_counter() - started
    print(f"import: {report.created} contacts in {elapsed:.2f} s ({report.created / elapsed:.0f} rows/s)")
    content = "\r\n".join(lines).encode()
    at_once: list[float] = []
    chunked: list[float] = []
    for attempt in range(3):
        target = actions.book_create(actor=member, name=f"At once {attempt}")
        started = time.perf_counter()
        transfer.book_import(actor=member, book=target, content=content, file_format="csv")
        at_once.append(time.perf_counter() - started)
        target = actions.book_create(actor=member, name=f"Background {attempt}")
        started = time.perf_counter()
        job = transfer.book_import_start(actor=member, book=target, content=content, file_format="csv")
        if not isinstance(job, transfer.ImportReport):
            transfer.book_import_run(import_id=job.pk)
        chunked.append(time.perf_counter() - started)
    print(
        f"import at once: median {statistics.median(at_once):.2f} s; in the background, in chunks of {transfer.IMPORT_CHUNK}: "
        f"median {statistics.median(chunked):.2f} s; ratio {statistics.median(chunked) / statistics.median(at_once):.2f}"
    )

    def measure(query: str) -> list[float]:
        times = []
        for _ in range(arguments.queries):
            started = time.perf_counter()
            selectors.contacts_autocomplete(actor=member, query=query)
            times.append(time.perf_counter() - started)
        return sorted(times)

    for label, query in (("prefix 'person12'", "person12"), ("exact address", f"person{arguments.contacts // 2}@example.org")):
        times = measure(query)
        print(
            f"autocomplete {label}: median {statistics.median(times) * 1000:.1f} ms, p90 {times[int(len(times) * 0.9) - 1] * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
