"""Cursor pagination (postroom.api.pagination): complete and stable walks, ties and sub-millisecond
sort keys, refused cursors and limits, and pages whose query count does not grow with the list."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from postroom.api.pagination import PageParams, paginate
from postroom.api.tests.helpers import ApiClient
from postroom.conftest import Cast
from postroom.orgs.models import Invitation, Membership, Team
from postroom.testing.factories import MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def walk(client: ApiClient, path: str, *, limit: int, cursor: str | None = None, **query: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list (from ``cursor`` on), following ``next``; and how many pages that took."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        response = client.get(path, limit=limit, **query, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.content
        body = response.json()
        items += body["items"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return items, pages


def test_members_are_walked_completely_in_order(cast: Cast) -> None:
    for number in range(7):
        MembershipFactory(organization=cast.org_a, user=UserFactory(email=f"m{number}@acme.test"))
    items, pages = walk(ApiClient(cast.bob), "/orgs/acme/members", limit=3)
    emails = [item["email"] for item in items]
    assert emails == sorted(Membership.objects.filter(organization=cast.org_a).values_list("user__email", flat=True))
    assert len(emails) == 10
    assert pages == 4
    assert "charlie@beta.test" not in emails


def test_pages_stay_stable_while_rows_are_added_and_removed(cast: Cast) -> None:
    for name in ("Bravo", "Delta", "Foxtrot", "Hotel", "Juliett"):
        TeamFactory(organization=cast.org_a, name=name)
    client = ApiClient(cast.bob)
    first = client.get("/orgs/acme/teams", limit=2).json()
    assert [team["name"] for team in first["items"]] == ["Bravo", "Delta"]
    # Meanwhile: a team before the cursor, one after it, and a seen one removed.
    TeamFactory(organization=cast.org_a, name="Alpha")
    TeamFactory(organization=cast.org_a, name="Golf")
    Team.objects.filter(name="Bravo").delete()
    rest, _pages = walk(client, "/orgs/acme/teams", limit=2, cursor=first["next"])
    assert [team["name"] for team in rest] == ["Foxtrot", "Golf", "Hotel", "Juliett"]


def test_equal_sort_keys_are_ordered_by_id_and_none_is_skipped(cast: Cast) -> None:
    moment = timezone.now()
    with time_machine.travel(moment, tick=False):
        for number in range(5):
            Invitation.objects.create(
                organization=cast.org_a,
                email=f"same{number}@example.test",
                token_hash=f"{number:064d}",
                expires_at=moment + timedelta(days=7),
            )
    items, pages = walk(ApiClient(cast.alice), "/orgs/acme/invitations", limit=1)
    assert [item["id"] for item in items] == sorted((item["id"] for item in items), reverse=True)
    assert len(items) == 5
    assert pages == 5


def test_sort_keys_keep_their_microseconds(cast: Cast) -> None:
    """Two rows 300 µs apart, ids in the opposite order: a cursor rounded to milliseconds would skip one."""
    moment = timezone.now().replace(microsecond=123_100)
    newer = Invitation.objects.create(
        organization=cast.org_a, email="newer@example.test", token_hash="1" * 64, expires_at=moment + timedelta(days=7)
    )
    older = Invitation.objects.create(
        organization=cast.org_a, email="older@example.test", token_hash="2" * 64, expires_at=moment + timedelta(days=7)
    )
    Invitation.objects.filter(pk=newer.pk).update(created_at=moment + timedelta(microseconds=300))
    Invitation.objects.filter(pk=older.pk).update(created_at=moment)
    items, _pages = walk(ApiClient(cast.alice), "/orgs/acme/invitations", limit=1)
    assert [item["email"] for item in items] == ["newer@example.test", "older@example.test"]


@pytest.mark.parametrize("cursor", ["abc", "W10:1tXkqv:abcdEFGH", "", "x" * 2049])
def test_a_made_up_cursor_is_a_422_naming_the_cursor(cast: Cast, cursor: str) -> None:
    response = ApiClient(cast.bob).get("/orgs/acme/members", cursor=cursor)
    if cursor == "":
        assert response.status_code == 200  # an empty cursor is the first page
        return
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cursor"


def test_a_cursor_works_only_on_the_list_it_came_from(cast: Cast) -> None:
    for name in ("One", "Two", "Three"):
        TeamFactory(organization=cast.org_a, name=name)
    client = ApiClient(cast.alice)
    members_cursor = client.get("/orgs/acme/members", limit=1).json()["next"]
    assert members_cursor
    response = client.get("/orgs/acme/teams", cursor=members_cursor)
    assert response.status_code == 422
    # Edited by one character: refused too.
    edited = members_cursor[:-1] + ("A" if members_cursor[-1] != "A" else "B")
    assert client.get("/orgs/acme/members", cursor=edited).status_code == 422


def test_a_cursor_never_widens_what_the_actor_sees(cast: Cast) -> None:
    """A cursor only continues an order inside the queryset the endpoint scoped to the actor."""
    MembershipFactory(organization=cast.org_b, user=UserFactory(email="zed@beta.test"))
    cursor = ApiClient(cast.alice).get("/orgs/acme/members", limit=1).json()["next"]
    items = ApiClient(cast.charlie).get("/orgs/beta/members", cursor=cursor).json()["items"]
    assert {item["email"] for item in items} <= {"charlie@beta.test", "zed@beta.test"}


@pytest.mark.parametrize("limit", [0, -1, 201, "many"])
def test_limit_outside_1_to_200_is_a_422(cast: Cast, limit: object) -> None:
    response = ApiClient(cast.bob).get("/orgs/acme/members", limit=limit)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit"


def test_related_and_descending_orders_directly(cast: Cast) -> None:
    for number in range(4):
        MembershipFactory(organization=cast.org_a, user=UserFactory(email=f"x{number}@acme.test"))
    queryset = Membership.objects.filter(organization=cast.org_a).select_related("user")
    expected = sorted(queryset.values_list("user__email", flat=True), reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        page = paginate(queryset, order=("-user__email",), params=PageParams(cursor=cursor, limit=2), key="test")
        seen += [membership.user.email for membership in page.items]
        cursor = page.next
        if cursor is None:
            break
    assert seen == expected


def test_a_page_costs_the_same_number_of_queries_however_long_the_list(cast: Cast) -> None:
    client = ApiClient(cast.bob)

    def queries_for_one_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/orgs/acme/members", limit=5).status_code == 200
        return len(queries)

    few = queries_for_one_page()
    for number in range(30):
        MembershipFactory(organization=cast.org_a, user=UserFactory(email=f"many{number}@acme.test"))
    assert queries_for_one_page() == few
