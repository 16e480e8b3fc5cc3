"""The shared test cast (see postroom.testing.factories) and common fixtures."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.test import Client

from postroom.accounts.models import User
from postroom.orgs.models import Membership, Organization
from postroom.orgs.policy import Role
from postroom.testing.factories import MembershipFactory, OrganizationFactory, UserFactory

pytest_plugins = ["postroom.testing.fixtures"]


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """allauth keeps rate-limit counters and used TOTP codes in the cache: each test starts clean."""
    cache.clear()


@dataclass
class Cast:
    org_a: Organization
    org_b: Organization
    alice: User  # owner of A
    carol: User  # admin of A
    bob: User  # member of A (Alice's teammate)
    charlie: User  # owner of B: an outsider to A
    alice_membership: Membership
    carol_membership: Membership
    bob_membership: Membership
    charlie_membership: Membership


@pytest.fixture
def cast(db: None) -> Cast:
    org_a = OrganizationFactory(name="Acme Support", slug="acme")
    org_b = OrganizationFactory(name="Beta Sales", slug="beta")
    alice = UserFactory(email="alice@acme.test", name="Alice Owner")
    carol = UserFactory(email="carol@acme.test", name="Carol Admin")
    bob = UserFactory(email="bob@acme.test", name="Bob Member")
    charlie = UserFactory(email="charlie@beta.test", name="Charlie Outsider")
    return Cast(
        org_a=org_a, org_b=org_b, alice=alice, carol=carol, bob=bob, charlie=charlie,
        alice_membership=MembershipFactory(organization=org_a, user=alice, role=Role.OWNER),
        carol_membership=MembershipFactory(organization=org_a, user=carol, role=Role.ADMIN),
        bob_membership=MembershipFactory(organization=org_a, user=bob, role=Role.MEMBER),
        charlie_membership=MembershipFactory(organization=org_b, user=charlie, role=Role.OWNER),
    )


@pytest.fixture
def queue(settings):  # type: ignore[no-untyped-def]
    """Tasks are kept (with their ``run_after``) instead of running at once: a ``DummyBackend``
    whose ``results`` the test runs, or inspects, itself."""
    from django_tasks import task_backends
    from django_tasks.backends.dummy import DummyBackend

    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend", "QUEUES": ["default"]}}
    backend = task_backends["default"]
    assert isinstance(backend, DummyBackend)  # noqa: S101 (test support)
    return backend


@pytest.fixture
def client_as(db: None):  # type: ignore[no-untyped-def]
    """``client_as(user)`` gives a test client signed in as ``user`` (second factor satisfied)."""

    def make(user: User) -> Client:
        client = Client()
        client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
        return client

    return make
