"""Django's database sessions, with the one read every request makes as a constant text.

Each request loads its session by key (``SessionMiddleware``, through ``request.user``). Django
builds that query with the ORM each time, which cost more than running it (issue #4). Here the
same query is a constant text (SECURITY.md R58): the row whose key is the cookie's and whose
expiry is still ahead. Everything else (saving, cycling the key, deleting) is Django's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.db import connection
from django.utils import timezone

_SESSION_SQL = "SELECT session_data FROM django_session WHERE session_key = %s AND expire_date > %s"


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key
        row = None
        if key:
            now = connection.ops.adapt_datetimefield_value(timezone.now())
            with connection.cursor() as cursor:
                cursor.execute(_SESSION_SQL, [key, now])
                row = cursor.fetchone()
        if key is None or row is None:
            self._session_key = None  # as Django's: an unknown or expired key starts a new session
            return None
        return self.model(session_key=key, session_data=row[0])
