"""The organization admin pages with the cast: what each person sees and may do (R24), the
'2FA' badge, and the organization's two-factor requirement."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client
from django.urls import reverse

from postroom.api.tests.helpers import ApiClient
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.orgs.models import Membership, Organization
from postroom.orgs.policy import Role
from postroom.orgs.tests.test_route_access import all_routes, sample_values
from postroom.testing.factories import TeamFactory

pytestmark = pytest.mark.django_db
MEMBERS = reverse("orgs:members", args=["acme"])


def _row(content: bytes, email: str) -> str:
    text = content.decode()
    start = text.index(f'data-member="{email}"')
    return text[start : text.index("</tr>", start)]


def test_members_page_shows_the_2fa_badge_for_totp_and_webauthn_only(cast: Cast, client_as) -> None:
    Authenticator.objects.create(user=cast.alice, type=Authenticator.Type.TOTP, data={})
    Authenticator.objects.create(user=cast.carol, type=Authenticator.Type.WEBAUTHN, data={})
    Authenticator.objects.create(user=cast.bob, type=Authenticator.Type.RECOVERY_CODES, data={})
    page = client_as(cast.bob).get(MEMBERS)
    assert page.status_code == 200
    assert ">2FA</span>" in _row(page.content, "alice@acme.test")
    assert ">2FA</span>" in _row(page.content, "carol@acme.test")
    assert ">No 2FA</span>" in _row(page.content, "bob@acme.test")
    assert b"charlie@beta.test" not in page.content


def test_members_page_offers_only_the_controls_the_role_allows(cast: Cast, client_as) -> None:
    bob_page = client_as(cast.bob).get(MEMBERS)
    assert b"/role/" not in bob_page.content
    assert b"Invitations" not in bob_page.content  # no admin navigation for members
    carol_page = client_as(cast.carol).get(MEMBERS)
    assert "/role/" not in _row(carol_page.content, "alice@acme.test")  # admins cannot touch owners
    assert "/role/" not in _row(carol_page.content, "carol@acme.test")  # nor themselves
    bob_row = _row(carol_page.content, "bob@acme.test")
    assert "/role/" in bob_row
    assert 'value="owner"' not in bob_row  # nor grant above their own role
    assert 'value="owner"' in _row(client_as(cast.alice).get(MEMBERS).content, "bob@acme.test")


def test_r24_a_role_change_applies_on_the_other_clients_next_request(cast: Cast) -> None:
    carols_browser = Client()
    carols_browser.force_login(cast.carol, backend="allauth.account.auth_backends.AuthenticationBackend")
    team = TeamFactory(organization=cast.org_a, name="Ops")
    assert carols_browser.get(reverse("orgs:invitations", args=["acme"])).status_code == 200
    # Alice demotes Carol in her own browser…
    alices_browser = Client()
    alices_browser.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    assert alices_browser.post(reverse("orgs:member_role", args=["acme", cast.carol_membership.pk]), {"role": "member"}).status_code == 302
    # …and Carol's very next admin action, in her still signed-in session, is refused.
    assert carols_browser.post(reverse("orgs:member_role", args=["acme", cast.bob_membership.pk]), {"role": "admin"}).status_code == 403
    assert carols_browser.post(reverse("orgs:team_update", args=["acme", team.pk]), {"operation": "delete"}).status_code == 403
    assert ApiClient(cast.carol).delete(f"/orgs/acme/members/{cast.bob_membership.pk}").status_code == 403
    assert Membership.objects.get(pk=cast.bob_membership.pk).role == Role.MEMBER
    assert carols_browser.get(reverse("orgs:team", args=["acme", team.pk])).status_code == 200  # still a member


def test_r24_last_owner_cannot_leave_or_be_demoted_through_the_pages(cast: Cast, client_as) -> None:
    alice = client_as(cast.alice)
    response = alice.post(reverse("orgs:member_remove", args=["acme", cast.alice_membership.pk]), follow=True)
    assert b"The last owner cannot leave" in response.content
    assert alice.post(reverse("orgs:member_role", args=["acme", cast.alice_membership.pk]), {"role": "admin"}).status_code == 403
    assert Membership.objects.get(pk=cast.alice_membership.pk).role == Role.OWNER
    # With a second owner, Alice may leave.
    alice.post(reverse("orgs:member_role", args=["acme", cast.carol_membership.pk]), {"role": "owner"})
    left = alice.post(reverse("orgs:member_remove", args=["acme", cast.alice_membership.pk]))
    assert left["Location"] == reverse("web:home")
    assert not Membership.objects.filter(pk=cast.alice_membership.pk).exists()


def test_r24_member_posting_role_owner_is_refused(cast: Cast, client_as) -> None:
    bob = client_as(cast.bob)
    for target in (cast.bob_membership, cast.carol_membership):
        assert bob.post(reverse("orgs:member_role", args=["acme", target.pk]), {"role": "owner"}).status_code == 403
    assert bob.post(reverse("orgs:invitations", args=["acme"]), {"email": "friend@example.test", "role": "owner"}).status_code == 403
    assert dict(Membership.objects.filter(organization=cast.org_a).values_list("user__email", "role")) == {
        "alice@acme.test": "owner", "carol@acme.test": "admin", "bob@acme.test": "member",
    }


def test_invalid_submissions_say_what_is_wrong(cast: Cast, client_as) -> None:
    carol = client_as(cast.carol)
    page = carol.post(reverse("orgs:member_role", args=["acme", cast.bob_membership.pk]), {"role": "emperor"}, follow=True)
    assert b"Select a valid choice" in page.content
    TeamFactory(organization=cast.org_a, name="Support")
    page = carol.post(reverse("orgs:teams", args=["acme"]), {"name": "support"})
    assert b"A team with this name already exists." in page.content
    page = carol.post(reverse("orgs:invitations", args=["acme"]), {"email": "bob@acme.test", "role": "member"})
    assert b"This person is already a member." in page.content


# --- the organization's two-factor requirement -----------------------------------------------------
def _app_pages(cast: Cast) -> list[str]:
    """Every signed-in page Bob could open (GET routes of the app, outside allauth's own pages)."""
    values = sample_values(cast)
    urls = [reverse("web:home"), reverse("accounts:security")]
    for route in all_routes():
        if route.template.startswith(("o/", "settings/")) and not route.template.endswith(("/role/", "/remove/", "/update/", "/revoke/", "export.csv")):
            urls.append(route.url(values))
    return urls


def test_require_2fa_sends_members_without_it_to_the_setup_page_from_every_app_page(cast: Cast, client_as) -> None:
    Organization.objects.filter(pk=cast.org_a.pk).update(require_two_factor=True)
    pages = _app_pages(cast)
    assert len(pages) >= 8
    bob = client_as(cast.bob)
    for url in pages:
        response = bob.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == reverse("mfa_index"), url
    assert bob.post(reverse("orgs:teams", args=["acme"]), {"name": "Sneaky"}).status_code == 302
    assert not cast.org_a.teams.filter(name="Sneaky").exists()
    # The way out stays open: the 2FA pages and signing out.
    assert bob.get(reverse("mfa_index")).status_code == 200
    activate = bob.get(reverse("mfa_activate_totp"))  # asks for the password first, not for 2FA
    assert activate["Location"].startswith(reverse("account_reauthenticate"))
    assert bob.get(activate["Location"]).status_code == 200
    # Once Bob has a second factor, everything opens; Charlie's organization never required it.
    Authenticator.objects.create(user=cast.bob, type=Authenticator.Type.TOTP, data={})
    assert bob.get(MEMBERS).status_code == 200
    assert client_as(cast.charlie).get(reverse("orgs:members", args=["beta"])).status_code == 200


def test_require_2fa_is_an_owner_or_admin_setting_and_is_audited(cast: Cast, client_as) -> None:
    settings_url = reverse("orgs:settings", args=["acme"])
    assert client_as(cast.bob).post(settings_url, {"name": "Acme", "require_two_factor": "on"}).status_code == 403
    Authenticator.objects.create(user=cast.carol, type=Authenticator.Type.WEBAUTHN, data={})
    assert client_as(cast.carol).post(settings_url, {"name": "Acme Support", "require_two_factor": "on"}).status_code == 302
    assert Organization.objects.get(pk=cast.org_a.pk).require_two_factor
    event = AuditEvent.objects.get(action="org.settings_changed")
    assert (event.actor_id, event.details) == (cast.carol.pk, {"require_two_factor": True})
