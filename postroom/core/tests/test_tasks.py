"""System mail goes out through the django-tasks API, sealed; on Redis when REDIS_URL is set."""

from __future__ import annotations

import os

import pytest
from django.core import mail
from django.db import transaction
from django.test import override_settings

from postroom.core.tasks import queue_system_mail


@pytest.mark.django_db(transaction=True)
def test_mail_is_sent_after_commit_and_not_on_rollback() -> None:
    with transaction.atomic():
        queue_system_mail(to=["a@example.test"], subject="Kept", text="body")
    assert [message.subject for message in mail.outbox] == ["Kept"]

    def queue_then_fail() -> None:
        with transaction.atomic():
            queue_system_mail(to=["a@example.test"], subject="Rolled back", text="body")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        queue_then_fail()
    assert [message.subject for message in mail.outbox] == ["Kept"]


@pytest.mark.django_db(transaction=True)
def test_database_backend_stores_no_plaintext_secret() -> None:
    from django_tasks_db.models import DBTaskResult

    backends = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
    with override_settings(TASKS=backends):
        with transaction.atomic():
            queue_system_mail(to=["a@example.test"], subject="Reset", text="https://x.test/reset/SECRET-TOKEN-123")
        row = DBTaskResult.objects.get()
        assert "SECRET-TOKEN-123" not in str(row.args_kwargs)
        assert "a@example.test" not in str(row.args_kwargs)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_redis_backend_delivers_system_mail() -> None:
    url = os.environ.get("POSTROOM_TEST_REDIS_URL")
    if not url:
        pytest.skip("POSTROOM_TEST_REDIS_URL is not set (scripts/test sets it when Redis runs)")
    import django_rq
    import redis
    from django_tasks_rq import Job
    from rq import SimpleWorker

    redis.Redis.from_url(url).flushdb()
    queues = {"default": {"URL": url, "DEFAULT_TIMEOUT": 60}}
    backends = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
    with override_settings(RQ_QUEUES=queues, TASKS=backends):
        with transaction.atomic():
            queue_system_mail(to=["r@example.test"], subject="Via Redis", text="body SECRET-456")
        queue = django_rq.get_queue("default")
        assert queue.count == 1
        for key in queue.connection.scan_iter():
            value = queue.connection.dump(key) or b""
            assert b"SECRET-456" not in value
        SimpleWorker([queue], connection=queue.connection, job_class=Job).work(burst=True)
        assert [message.subject for message in mail.outbox] == ["Via Redis"]
