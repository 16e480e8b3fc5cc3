"""The database connection as the settings configure it."""

from __future__ import annotations

import pytest
from django.db import connection

from postroom.orgs.models import Organization


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_query_run_again_is_prepared_on_postgresql() -> None:
    """Pages repeat the same query texts on pooled connections: the server plans each once
    (planning was most of a page's database time, bench/README.md "prepared statements")."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite caches its own")
    slug = "prepared-statements-probe"
    with connection.cursor() as cursor:
        for _ in range(3):
            list(Organization.objects.filter(slug=slug))
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any('FROM "orgs_organization"' in statement and "$1" in statement for statement in prepared), prepared
