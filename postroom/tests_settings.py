"""Settings for the test suite: the real settings, with a throwaway data directory.

``DATABASE_URL`` selects PostgreSQL exactly as in production; mail goes to Django's in-memory
outbox; tasks run immediately after commit unless a test picks a real backend.
"""

import os
import tempfile

os.environ.setdefault("POSTROOM_DATA_DIR", tempfile.mkdtemp(prefix="postroom-test-"))

from postroom.settings import *  # noqa: F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend", "QUEUES": ["default"]}}
# Argon2 with its production cost on every test login would dominate the suite's run time;
# the hasher itself is tested with the production settings (test_r03_password_storage).
PASSWORD_HASHERS = ["postroom.accounts.tests.hashers.FastArgon2PasswordHasher", *PASSWORD_HASHERS]  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # type: ignore[index]  # noqa: F405
# SQLite: the test database is a file, as in production, not Django's default shared-cache memory
# database. In shared-cache mode SQLite locks whole tables and answers a second writer at once with
# "database table is locked" instead of waiting its busy timeout, so tests whose sync threads
# write beside the test's own thread failed now and then under load.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
# The test database is gone by interpreter exit; the flush itself is tested in test_crypto.
POSTROOM_FLUSH_KEY_USAGE_AT_EXIT = False
