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


@pytest.mark.postgres
@pytest.mark.django_db
def test_bulk_writes_past_the_bound_parameter_limit_on_postgresql() -> None:
    """Server-side binding counts a statement's parameters in 16 bits. bulk_create and
    bulk_update of more rows than fit in one statement still work, in batches that fit
    (postroom/core/postgresql); with Django's own backend psycopg refuses the statement."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's backend batches by its own limit")
    from postroom.contacts.models import BookKind, Contact, ContactBook, ContactSource

    organization = Organization.objects.create(name="Bulk", slug="bulk-parameters")
    book = ContactBook.objects.create(organization=organization, kind=BookKind.ORGANIZATION, name="All")
    # A sealed (binary) column keeps Django from inserting through UNNEST (one array per
    # column): a parameter per column and row, 9 x 8,000 = 72,000.
    rows = 8_000
    Contact.objects.bulk_create([Contact(organization=organization, book=book, name_index=f"{number:064}") for number in range(rows)])
    assert Contact.objects.filter(book=book).count() == rows

    # bulk_update: (key, value) per column and row, and the key in its IN list: 5 x 14,000.
    Contact.objects.bulk_create([Contact(organization=organization, book=book) for _ in range(6_000)])
    contacts = list(Contact.objects.filter(book=book))
    for contact in contacts:
        contact.name_index, contact.source = "f" * 64, ContactSource.IMPORT
    Contact.objects.bulk_update(contacts, ["name_index", "source"])
    assert Contact.objects.filter(book=book, name_index="f" * 64, source=ContactSource.IMPORT).count() == len(contacts) == 14_000
