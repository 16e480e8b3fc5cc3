"""Tasks of contacts: a big import, run in chunks with its progress recorded (``transfer``)."""

from __future__ import annotations

from django_tasks import task

from postroom.contacts.transfer import book_import_run


@task(queue_name="default")
def contacts_import_run(import_id: str) -> None:
    book_import_run(import_id=import_id)
