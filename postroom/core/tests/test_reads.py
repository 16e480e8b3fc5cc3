"""``core.rows.Reads``: independent reads sent together, one round trip on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from postroom.conftest import Cast
from postroom.core.rows import Fetched, Read, Reads, fetch_together
from postroom.orgs.models import Organization, Team
from postroom.testing.queries import round_trips, trips_of

pytestmark = pytest.mark.django_db

_TEAMS = "SELECT id, name FROM orgs_team WHERE organization_id = %(organization)s ORDER BY name"
_ORGANIZATION = "SELECT slug FROM orgs_organization WHERE id = %(organization)s"


def test_fetch_together_answers_each_query_as_alone(cast: Cast) -> None:
    organization = cast.alice_membership.organization
    for name in ("Sales", "Billing", "Support"):
        Team.objects.create(organization=organization, name=name)
    other = Organization.objects.create(name="Other", slug="other-organization")
    queries = [
        (_TEAMS, {"organization": organization.pk}),
        (_ORGANIZATION, {"organization": other.pk}),
        (_TEAMS, {"organization": other.pk}),  # nothing
        (_ORGANIZATION, {"organization": organization.pk}),
    ]
    alone = [fetch_together([query])[0] for query in queries]
    with CaptureQueriesContext(connection) as captured:
        together = fetch_together(queries)
    assert together == alone
    assert [names for names, _ in together] == [["id", "name"], ["slug"], ["id", "name"], ["slug"]]
    assert [name for _, name in together[0][1]] == ["Billing", "Sales", "Support"]
    assert together[1][1] == [("other-organization",)]
    assert together[2][1] == []
    assert len(captured.captured_queries) == 4  # every query is logged and counted, as Django's own


@pytest.mark.postgres
def test_reads_go_in_one_round_trip_on_postgresql(cast: Cast) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite answers in process: there is no round trip to save")
    organization = cast.alice_membership.organization
    Team.objects.create(organization=organization, name="Sales")
    queries = [(_TEAMS, {"organization": organization.pk}), (_ORGANIZATION, {"organization": organization.pk})] * 3
    with round_trips() as seen:
        fetch_together(queries)
    assert len(seen) == 6
    assert trips_of(seen) == 1
    with round_trips() as seen:
        for query in queries:
            fetch_together([query])
    assert trips_of(seen) == 6  # alone, each its own


def test_reads_give_each_pending_its_own_answers(cast: Cast) -> None:
    organization = cast.alice_membership.organization
    Team.objects.create(organization=organization, name="Sales")
    parameters = {"organization": organization.pk}

    def names(fetched: list[Fetched]) -> list[str]:
        return [row[-1] for answer in fetched for row in answer[1]]

    reads = Reads()
    two = reads.add(Read(((_ORGANIZATION, parameters), (_TEAMS, parameters)), names))
    one = reads.add(Read(((_TEAMS, parameters),), lambda fetched: len(fetched[0][1])))
    with pytest.raises(RuntimeError):
        two.value  # noqa: B018 (not read yet)
    reads.run()
    assert two.value == [organization.slug, "Sales"]
    assert one.value == 1
    assert Read(((_TEAMS, parameters),), names).alone() == ["Sales"]


@pytest.mark.postgres
def test_a_failing_query_in_a_pipeline_raises_djangos_error_and_the_connection_goes_on(cast: Cast) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    from django.db import ProgrammingError, transaction

    organization = cast.alice_membership.organization
    parameters = {"organization": organization.pk}
    with pytest.raises(ProgrammingError), transaction.atomic():
        fetch_together([(_TEAMS, parameters), ("SELECT no_such_column FROM orgs_team", {})])
    assert fetch_together([(_ORGANIZATION, parameters), (_TEAMS, parameters)])[0][1] == [(organization.slug,)]
