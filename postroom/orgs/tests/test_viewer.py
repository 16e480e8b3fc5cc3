"""One read per request of the signed-in user's memberships and second factor (``orgs.viewer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from allauth.mfa.models import Authenticator
from django.db import connection
from django.http import Http404, HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from postroom.conftest import Cast
from postroom.orgs import viewer
from postroom.orgs.models import Membership, Organization
from postroom.orgs.policy import Role
from postroom.orgs.selectors import membership_get, membership_of_viewer, memberships_list, memberships_of
from postroom.testing.factories import MembershipFactory, OrganizationFactory

T = TypeVar("T")

pytestmark = pytest.mark.django_db


def in_request(work: Callable[[], T]) -> T:
    """``work``'s answer, run where a view runs: inside ``ViewerMiddleware``."""
    answers: list[T] = []

    def view(request: Any) -> HttpResponse:
        answers.append(work())
        return HttpResponse()

    viewer.ViewerMiddleware(view)(RequestFactory().get("/"))
    return answers[0]


def summary(memberships: list[Membership]) -> list[tuple[Any, ...]]:
    return [
        (m.pk, m.role, m.user_id, m.created_at, m.organization.pk, m.organization.name, m.organization.slug, m.organization.require_two_factor, m.organization.created_at)
        for m in memberships
    ]  # fmt: skip


def test_one_read_answers_the_middleware_the_view_and_the_sidebar(cast: Cast) -> None:
    third = OrganizationFactory(name="Aardvark Co", slug="aardvark")  # sorts before Acme
    MembershipFactory(organization=third, user=cast.alice, role=Role.MEMBER)
    expected = list(memberships_of(user=cast.alice))

    def asks() -> tuple[Any, ...]:
        with CaptureQueriesContext(connection) as captured:
            answers = (
                viewer.two_factor_required_and_missing(cast.alice),
                membership_get(user=cast.alice, slug="acme"),
                membership_of_viewer(user=cast.alice, organization_id=third.pk),
                memberships_list(user=cast.alice),
                membership_get(user=cast.alice, slug="acme"),
            )
        return (*answers, len(captured))

    missing, acme, aardvark, listed, again, queries = in_request(asks)
    assert queries == 1
    assert missing is False
    assert summary(listed) == summary(expected)  # the ORM's memberships, in its order
    assert [m.organization.slug for m in listed] == ["aardvark", "acme"]
    assert summary([acme]) == summary([cast.alice_membership])
    assert acme.user == cast.alice
    assert aardvark.organization.slug == "aardvark"
    assert again is not acme
    assert again.organization is not acme.organization


def test_what_the_user_may_not_see_is_still_refused(cast: Cast) -> None:
    def asks() -> tuple[Any, ...]:
        with pytest.raises(Http404):
            membership_get(user=cast.alice, slug="beta")
        return membership_of_viewer(user=cast.alice, organization_id=cast.org_b.pk), memberships_list(user=cast.charlie)

    outsider, charlies = in_request(asks)
    assert outsider is None
    assert [m.organization.slug for m in charlies] == ["beta"]


def test_a_write_during_the_request_is_seen_by_the_rest_of_it(cast: Cast) -> None:
    def asks() -> list[Any]:
        seen = [membership_get(user=cast.bob, slug="acme").role, viewer.two_factor_required_and_missing(cast.bob)]
        promoted = Membership.objects.get(pk=cast.bob_membership.pk)
        promoted.role = Role.ADMIN
        promoted.save()
        organization = Organization.objects.get(pk=cast.org_a.pk)
        organization.require_two_factor = True
        organization.save()
        seen += [membership_get(user=cast.bob, slug="acme").role, viewer.two_factor_required_and_missing(cast.bob)]
        Authenticator.objects.create(user=cast.bob, type=Authenticator.Type.TOTP, data={"secret": "unused"})
        seen.append(viewer.two_factor_required_and_missing(cast.bob))
        Membership.objects.filter(pk=cast.bob_membership.pk).delete()
        with pytest.raises(Http404):
            membership_get(user=cast.bob, slug="acme")
        return seen

    assert in_request(asks) == [Role.MEMBER, False, Role.ADMIN, True, False]


def test_nothing_outlives_the_request(cast: Cast) -> None:
    assert in_request(lambda: membership_get(user=cast.bob, slug="acme").role) == Role.MEMBER
    with CaptureQueriesContext(connection) as captured:  # no snapshot outside a request: each ask reads
        viewer.memberships(cast.bob)
        viewer.memberships(cast.bob)
    assert len(captured.captured_queries) == 2
    # A change with no signal (as made by another process) is seen by the next request.
    Membership.objects.filter(pk=cast.bob_membership.pk).update(role=Role.ADMIN)
    assert in_request(lambda: membership_get(user=cast.bob, slug="acme").role) == Role.ADMIN
    assert membership_get(user=cast.bob, slug="acme").role == Role.ADMIN  # outside: the database


def test_a_page_reads_the_memberships_once(cast: Cast, client_as: Any) -> None:
    """The two-factor check, the organization the URL names and the sidebar: one query."""
    client = client_as(cast.alice)
    client.get("/o/acme/conversations/")  # compiles what a first request compiles
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/o/acme/conversations/")
    assert response.status_code == 200
    queries = [query["sql"] for query in captured.captured_queries]
    assert sum("FROM orgs_membership p INNER JOIN orgs_organization o" in sql for sql in queries) == 1, queries
    assert not [sql for sql in queries if '"mfa_authenticator"' in sql or 'FROM "orgs_membership"' in sql], queries
    assert b"Acme Support" in response.content
    assert b"Beta Sales" not in response.content


def test_the_query_reads_every_column() -> None:
    """A column added to a membership or an organization must be added to the query too, or
    every page would read it again, lazily, as a deferred field."""
    assert set(viewer._MEMBERSHIP_COLUMNS) == {field.column for field in Membership._meta.concrete_fields}
    assert set(viewer._ORGANIZATION_COLUMNS) == {field.column for field in Organization._meta.concrete_fields}
