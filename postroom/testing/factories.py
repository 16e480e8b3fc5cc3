"""Factories for the test cast: Alice owns organization A, Bob is her teammate, Carol is an
admin there, and Charlie owns organization B and must see nothing of A."""

from __future__ import annotations

from typing import Any

import factory
from allauth.account.models import EmailAddress

from postroom.accounts.models import User
from postroom.orgs.models import Membership, Organization, Team
from postroom.orgs.policy import Role

DEFAULT_PASSWORD = "correct horse battery staple"  # noqa: S105 (test-only)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda number: f"person{number}@example.test")
    name = factory.Faker("name")

    @factory.post_generation
    def password(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        self.set_password(extracted or DEFAULT_PASSWORD)
        if create:
            self.save(update_fields=["password"])
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=True)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda number: f"Organization {number}")
    slug = factory.Sequence(lambda number: f"org-{number}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda number: f"Team {number}")
