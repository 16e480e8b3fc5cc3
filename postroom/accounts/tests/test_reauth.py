"""R6: changing how an account signs in needs a password (or second factor) confirmed within
five minutes, checked on the server; nothing else asks for it.

Every sensitive endpoint is listed in ``SENSITIVE`` and called directly — no UI — first with a
confirmation six minutes old (refused: sent to confirm, nothing changed), then right after
confirming (done). ``test_r06_every_account_url_is_classified`` walks the URL resolver so that a
new account, two-factor, login-provider or session URL cannot appear without being put in the
table or, with a reason, in ``NOT_SENSITIVE``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.core.cache import cache
from django.test import Client, override_settings

from postroom.accounts.api_tokens import api_token_create
from postroom.accounts.models import ApiToken, User
from postroom.accounts.tests.session_helpers import (
    confirm_password,
    confirm_second_factor,
    enable_totp,
    is_signed_in,
    session_key,
    signed_in_client,
    totp_code,
    url_names,
)
from postroom.testing.factories import DEFAULT_PASSWORD

START = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
NEW_PASSWORD = "an entirely different sentence to sign in"
STALE = timedelta(minutes=5, seconds=1)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()


@pytest.fixture
def identity_provider() -> Iterator[None]:
    """A configured provider, so that a linked login of it can be unlinked (no network is used)."""
    app = {"provider_id": "corp", "name": "Corp", "client_id": "postroom", "secret": "not-a-real-secret",
           "settings": {"server_url": "https://id.corp.example", "oauth_pkce_enabled": True, "token_auth_method": "client_secret_post"}}
    with override_settings(SOCIALACCOUNT_PROVIDERS={"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": [app]}}):
        yield


@dataclass
class Case:
    """One sensitive endpoint: how to call it, and how to tell that it did something."""

    name: str  # the URL name it is reached by
    call: Callable[[Client, dict[str, Any]], Any]
    done: Callable[[User, dict[str, Any]], bool]
    prepare: Callable[[User, dict[str, Any]], None] = lambda user, state: None
    # The first call made with a stale confirmation; by default the same as ``call``.
    stale_call: Callable[[Client, dict[str, Any]], Any] | None = None
    password: bool = True  # False: the account has no password, only a second factor
    extra: dict[str, Any] = field(default_factory=dict)


def _post(path: str, data: dict[str, str] | None = None) -> Callable[[Client, dict[str, Any]], Any]:
    return lambda client, state: client.post(path.format(**state), {key: value.format(**state) for key, value in (data or {}).items()})


def _get(path: str) -> Callable[[Client, dict[str, Any]], Any]:
    return lambda client, state: client.get(path.format(**state))


def _with_totp(user: User, state: dict[str, Any]) -> None:
    state["secret"] = enable_totp(user)
    state["seed"] = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES).data["seed"]


def _with_passkey(user: User, state: dict[str, Any]) -> None:
    state["passkey"] = Authenticator.objects.create(
        user=user, type=Authenticator.Type.WEBAUTHN, data={"name": "Phone", "credential": {}, "passwordless": True}
    ).pk


def _with_second_address(user: User, state: dict[str, Any]) -> None:
    EmailAddress.objects.create(user=user, email="alice.spare@acme.test", verified=False, primary=False)


def _without_password(user: User, state: dict[str, Any]) -> None:
    user.set_unusable_password()
    user.save(update_fields=["password"])
    _with_totp(user, state)


def _with_linked_login(user: User, state: dict[str, Any]) -> None:
    state["linked"] = SocialAccount.objects.create(user=user, provider="corp", uid="alice-at-corp").pk


def _with_another_session(user: User, state: dict[str, Any]) -> None:
    state["other"] = signed_in_client(user)
    state["other_session"] = UserSession.objects.get(session_key=session_key(state["other"])).pk


def _with_api_token(user: User, state: dict[str, Any]) -> None:
    state["api_token"] = api_token_create(user=user, name="Script", scope="read", expires_at=None).row.pk


def _activate_totp(client: Client, state: dict[str, Any]) -> Any:
    page = client.get("/accounts/2fa/totp/activate/")
    if page.status_code != 200:
        return page
    return client.post("/accounts/2fa/totp/activate/", {"code": totp_code(page.context["form"].secret)})


def _recovery_codes_shown(response: Any) -> bool:
    return response.status_code == 200 and b"****" not in response.content


SENSITIVE = [
    Case("account_change_password",
         _post("/accounts/password/change/", {"oldpassword": DEFAULT_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}),
         lambda user, state: user.check_password(NEW_PASSWORD)),
    Case("account_set_password",
         _post("/accounts/password/set/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}),
         lambda user, state: user.check_password(NEW_PASSWORD), prepare=_without_password, password=False),
    Case("account_email",  # add an address (with ACCOUNT_CHANGE_EMAIL: change it)
         _post("/accounts/email/", {"action_add": "", "email": "alice.new@acme.test"}),
         lambda user, state: EmailAddress.objects.filter(email="alice.new@acme.test").exists()),
    Case("account_email",  # remove an address
         _post("/accounts/email/", {"action_remove": "", "email": "alice.spare@acme.test"}),
         lambda user, state: not EmailAddress.objects.filter(email="alice.spare@acme.test").exists(), prepare=_with_second_address),
    Case("mfa_activate_totp", _activate_totp,
         lambda user, state: Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists(),
         stale_call=_post("/accounts/2fa/totp/activate/", {"code": "123456"})),
    Case("mfa_deactivate_totp", _post("/accounts/2fa/totp/deactivate/"),
         lambda user, state: not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists(), prepare=_with_totp),
    Case("mfa_view_recovery_codes", _get("/accounts/2fa/recovery-codes/"),
         lambda user, state: _recovery_codes_shown(state["response"]), prepare=_with_totp),
    Case("mfa_download_recovery_codes", _get("/accounts/2fa/recovery-codes/download/"),
         lambda user, state: state["response"].status_code == 200 and state["response"]["Content-Type"].startswith("text/plain"), prepare=_with_totp),
    Case("mfa_generate_recovery_codes", _post("/accounts/2fa/recovery-codes/generate/"),
         lambda user, state: Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES).data["seed"] != state["seed"], prepare=_with_totp),
    # Registering a real passkey needs a browser's authenticator (see the browser tests); here
    # "done" means the registration form is served instead of the confirmation page.
    Case("mfa_add_webauthn", _get("/accounts/2fa/webauthn/add/"),
         lambda user, state: state["response"].status_code == 200,
         stale_call=_post("/accounts/2fa/webauthn/add/", {"name": "Mine now", "credential": "null"})),
    Case("mfa_remove_webauthn", _post("/accounts/2fa/webauthn/keys/{passkey}/remove/"),
         lambda user, state: not Authenticator.objects.filter(pk=state["passkey"]).exists(), prepare=_with_passkey),
    Case("mfa_edit_webauthn", _post("/accounts/2fa/webauthn/keys/{passkey}/edit/", {"name": "Renamed"}),
         lambda user, state: Authenticator.objects.get(pk=state["passkey"]).data["name"] == "Renamed", prepare=_with_passkey),
    Case("socialaccount_connections", _post("/accounts/3rdparty/", {"account": "{linked}"}),
         lambda user, state: not SocialAccount.objects.filter(pk=state["linked"]).exists(), prepare=_with_linked_login),
    Case("usersessions_list", _post("/accounts/sessions/"),
         lambda user, state: not is_signed_in(state["other"]), prepare=_with_another_session),
    Case("accounts:session_end", _post("/settings/sessions/{other_session}/end/"),
         lambda user, state: not is_signed_in(state["other"]), prepare=_with_another_session),
    # API tokens are login credentials: creating one (the page itself can be looked at) and revoking one.
    Case("accounts:api_tokens", _post("/settings/api-tokens/", {"name": "Nightly export", "scope": "write", "expires_in": "30"}),
         lambda user, state: ApiToken.objects.filter(user=user, name="Nightly export").exists()),
    Case("accounts:api_token_revoke", _post("/settings/api-tokens/{api_token}/revoke/"),
         lambda user, state: ApiToken.objects.get(pk=state["api_token"]).revoked_at is not None, prepare=_with_api_token),
]

# URL names in the account areas that need no fresh confirmation, and why.
NOT_SENSITIVE = {
    "account_login": "signing in",
    "account_logout": "signing out",
    "account_signup": "creating an account",
    "account_inactive": "an information page",
    "account_reauthenticate": "the confirmation itself",
    "account_email_verification_sent": "an information page",
    "account_confirm_email": "confirms an address whose adding was gated; the emailed key is the proof",
    "account_confirm_login_code": "a login step",
    "account_reset_password": "a reset is proven by the emailed token (R11)",
    "account_reset_password_done": "an information page",
    "account_reset_password_from_key": "a reset is proven by the emailed token (R11)",
    "account_reset_password_from_key_done": "an information page",
    "mfa_index": "an overview that changes nothing",
    "mfa_authenticate": "the second step of signing in",
    "mfa_reauthenticate": "the confirmation itself",
    "mfa_reauthenticate_webauthn": "the confirmation itself",
    "mfa_login_webauthn": "signing in with a passkey",
    "mfa_list_webauthn": "a list that changes nothing",
    "socialaccount_login_cancelled": "an information page",
    "socialaccount_login_error": "an information page",
    "socialaccount_signup": "creating an account through a provider",
    # Linking: allauth asks for the confirmation when the provider sends the member back, before
    # the link is stored; the OpenID Connect tests drive that with a real provider.
    "openid_connect_login": "signing in, or the start of a link (confirmed at the callback)",
    "openid_connect_callback": "signing in, or the end of a link, which allauth gates",
    "accounts:security": "an overview that changes nothing",
}
ACCOUNT_AREAS = ("account_", "mfa_", "socialaccount_", "usersessions_", "openid_connect_", "accounts:")


def test_r06_every_account_url_is_classified() -> None:
    names = {name for name in url_names() if name.startswith(ACCOUNT_AREAS)}
    gated = {case.name for case in SENSITIVE}
    assert not gated & set(NOT_SENSITIVE)
    unclassified = names - gated - set(NOT_SENSITIVE)
    assert not unclassified, f"new account URLs: add them to SENSITIVE (with a test case) or NOT_SENSITIVE: {sorted(unclassified)}"
    assert not (gated | set(NOT_SENSITIVE)) - names, "the tables name URLs that no longer exist"


def _confirm(client: Client, case: Case, state: dict[str, Any]) -> None:
    if case.password:
        confirm_password(client)
    else:
        confirm_second_factor(client, state["secret"])


@pytest.mark.usefixtures("identity_provider")
@pytest.mark.parametrize("case", SENSITIVE, ids=[f"{index:02d}-{case.name}" for index, case in enumerate(SENSITIVE)])
def test_r06_sensitive_endpoints_need_a_fresh_confirmation(cast, case: Case) -> None:
    alice: User = cast.alice
    state: dict[str, Any] = {}
    with time_machine.travel(START, tick=False) as clock:
        case.prepare(alice, state)
        client = Client()
        client.force_login(alice, backend="allauth.account.auth_backends.AuthenticationBackend")
        _confirm(client, case, state)
        clock.shift(STALE)

        response = (case.stale_call or case.call)(client, state)
        state["response"] = response
        alice.refresh_from_db()
        expected = "/accounts/reauthenticate/" if case.password else "/accounts/2fa/reauthenticate/"
        assert response.status_code == 302
        assert response["Location"].startswith(expected)
        assert not case.done(alice, state)
        assert response.wsgi_request.user == alice  # asked to confirm, not signed out

        clock.shift(timedelta(seconds=31))  # a second factor's next code
        _confirm(client, case, state)
        state["response"] = case.call(client, state)
        alice.refresh_from_db()
        assert case.done(alice, state)


@pytest.mark.parametrize(
    "path",
    ["/settings/security/", "/accounts/email/", "/accounts/2fa/", "/accounts/2fa/webauthn/", "/accounts/sessions/",
     "/accounts/3rdparty/", "/settings/api-tokens/", "/o/acme/settings/", "/o/acme/members/", "/"],
)
def test_r06_other_pages_never_ask(cast, path: str) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = Client()
        client.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
        confirm_password(client)
        clock.shift(timedelta(hours=1))
        response = client.get(path)
        assert response.status_code == 200, response.get("Location")


def test_r06_a_gated_form_is_not_replayed_after_confirming(cast) -> None:
    """The refused POST is not kept: confirming does not change the password behind the
    member's back, and the session row never holds the new password."""
    client = Client()
    client.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    response = client.post("/accounts/password/change/", {"oldpassword": DEFAULT_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response["Location"] == "/accounts/reauthenticate/?next=%2Faccounts%2Fpassword%2Fchange%2F"
    assert NEW_PASSWORD not in json.dumps(client.session._session)
    response = client.post(response["Location"], {"password": DEFAULT_PASSWORD})
    assert response["Location"] == "/accounts/password/change/"
    cast.alice.refresh_from_db()
    assert cast.alice.check_password(DEFAULT_PASSWORD)


def test_r06_confirmation_lasts_five_minutes(cast) -> None:
    with time_machine.travel(START, tick=False) as clock:
        client = Client()
        client.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
        confirm_password(client)
        clock.shift(timedelta(minutes=4, seconds=59))
        assert client.get("/accounts/password/change/").status_code == 200
        clock.shift(timedelta(seconds=2))
        assert client.get("/accounts/password/change/")["Location"].startswith("/accounts/reauthenticate/")


def test_r06_signing_in_is_not_a_confirmation(cast) -> None:
    client = signed_in_client(cast.alice)
    assert client.get("/accounts/password/change/")["Location"].startswith("/accounts/reauthenticate/")


def test_r06_anonymous_requests_go_to_login(db) -> None:
    for path in ("/accounts/password/change/", "/accounts/sessions/", "/settings/sessions/1/end/"):
        response = Client().post(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
