"""OpenID Connect sign-in: django-allauth's generic provider, with the checks it leaves out.

The attacker: someone who wants a session as a member without their credentials. They can
lure a member's browser through a login link of their choosing (login CSRF, code injection),
replay a code or an ID token they saw, stand up or control an identity provider account that
claims a victim's email, or steal a session and then try to attach their own identity
provider account to it for lasting access.

Defences, and why each lives here:

- PKCE with S256 on every authorization request, whatever the app settings say, so a stolen
  code is useless without this browser's verifier.
- A fresh ``nonce`` per request, kept in allauth's state (which is bound to the session that
  started the flow, like ``state`` itself) and compared with the ID token's. allauth sends
  no nonce.
- The ID token is always verified against the provider's JWKS. allauth skips the signature
  when the token came straight from the token endpoint (OIDC Core allows that over TLS);
  Postroom verifies anyway, so that a wrong key, ``alg=none`` or HMAC key confusion is
  refused even if the transport or the provider's token endpoint is not what it seems. Only
  asymmetric algorithms are accepted. ``iss`` must equal the configured issuer exactly (and
  the discovery document must name that same issuer), ``aud`` must hold our client id (and
  ``azp`` must be ours when there are several audiences), ``exp``/``iat`` are required, and
  a token's ``jti`` is accepted once.
- The userinfo ``sub`` must equal the ID token's ``sub`` (OIDC Core 5.3.2), and an identity
  already linked under one issuer is not accepted from another: accounts are keyed by
  (issuer, subject), never by email.
- The ``email_verified`` claim is believed only from providers configured as trustworthy
  for it; otherwise Postroom confirms the address itself before it can be used.
- Reauthentication through the provider sends ``prompt=login`` and ``max_age=0`` and
  requires an ``auth_time`` no older than the request. A member who has neither a password
  nor a second factor (allauth then treats every reauthentication check as passed) must
  reauthenticate this way before linking or unlinking logins.

allauth's own callback view builds its adapter class directly, so this module mounts the
login and callback views of ``openid_connect`` with Postroom's adapter, on the same paths.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

import jwt
from allauth.account import app_settings as account_settings
from allauth.account.internal.decorators import login_not_required
from allauth.account.internal.flows.login import get_authentication_records, record_authentication
from allauth.account.internal.flows.reauthentication import get_reauthentication_flows
from allauth.account.models import EmailAddress
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.internal import jwtkit
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.base.constants import AuthAction, AuthError, AuthProcess
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.utils import generate_code_challenge
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from allauth.utils import get_request_param
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.http import urlencode
from requests import RequestException

# Asymmetric algorithms only: HS* would let anyone who knows the client secret (or, through
# key confusion, the public key) mint tokens, and "none" is no signature at all.
ID_TOKEN_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
# How far the provider's clock may trail ours when it reports auth_time for a reauthentication.
AUTH_TIME_SKEW_SECONDS = 30


class PostroomOpenIDConnectProvider(OpenIDConnectProvider):
    def get_pkce_params(self) -> dict[str, Any]:
        return generate_code_challenge()

    def get_oauth2_adapter(self, request: HttpRequest) -> PostroomOpenIDConnectAdapter:
        return PostroomOpenIDConnectAdapter(request, self.app.provider_id)

    def get_auth_params_from_request(self, request: HttpRequest, action: str) -> dict[str, Any]:
        # allauth lets the login URL add any authorization parameter (?auth_params=...),
        # including state, redirect_uri and response_type: a crafted login link must not
        # change the protocol, so only the configured parameters are sent.
        return self.get_auth_params()

    def get_redirect_from_request_kwargs(self, request: HttpRequest) -> dict[str, Any]:
        kwargs = super().get_redirect_from_request_kwargs(request)
        if get_request_param(request, "action") == AuthAction.REAUTHENTICATE:
            # Reauthentication confirms the member who is signed in; it never signs anyone in.
            kwargs["process"] = AuthProcess.REDIRECT
            kwargs["reauthentication_requested_at"] = int(time.time())
        return kwargs

    def redirect(self, request: HttpRequest, process: str, next_url: str | None = None, data: Any = None, **kwargs: Any) -> HttpResponse:
        auth_params = kwargs.pop("auth_params", None) or self.get_auth_params()
        nonce = secrets.token_urlsafe(32)
        auth_params["nonce"] = nonce
        if kwargs.get("reauthentication_requested_at"):
            auth_params.update(prompt="login", max_age="0")
        try:
            return super().redirect(request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs)
        except (OAuth2Error, RequestException) as error:
            # allauth reads the discovery document outside its own error handling here.
            return render_authentication_error(request, self, exception=error)

    def serialize(self) -> dict[str, Any]:
        # allauth finds the app again by provider type and client id, which is ambiguous when
        # two issuers gave Postroom the same client id; the provider id is unique.
        return {"id": self.app.provider_id, "app.client_id": self.app.client_id}

    def extract_email_addresses(self, data: dict[str, Any]) -> list[EmailAddress]:
        addresses = super().extract_email_addresses(data)
        if not self.app.settings.get("trust_email_verified", False):
            for address in addresses:
                address.verified = False
        return addresses


class PostroomOpenIDConnectAdapter(OpenIDConnectOAuth2Adapter):
    # The state allauth unstashed for this callback: set by PostroomCallbackView before any
    # token is fetched, and required by complete_login.
    callback_state: dict[str, Any] | None = None

    def get_provider(self) -> PostroomOpenIDConnectProvider:
        return PostroomOpenIDConnectProvider(self.request, app=super().get_provider().app)

    @property
    def openid_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().openid_config
        configured_issuer = self.get_provider().app.settings["server_url"]
        if config.get("issuer") != configured_issuer:
            # OIDC Discovery 4.3: the document must name the issuer it was fetched for.
            raise OAuth2Error(f"Discovery names issuer {config.get('issuer')!r}, expected {configured_issuer!r}")
        return config

    def complete_login(self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any) -> SocialLogin:
        if self.callback_state is None:
            raise OAuth2Error("No authorization request is pending for this callback")
        id_token = kwargs["response"].get("id_token")
        if not id_token:
            raise OAuth2Error("The provider returned no ID token")
        claims = self._decode_id_token(app, id_token)
        self._check_request_binding(claims, self.callback_state)
        data: dict[str, Any] = {"id_token": claims}
        if app.settings.get("fetch_userinfo", True):
            userinfo = self._fetch_user_info(token.token)
            if userinfo.get("sub") != claims["sub"]:
                raise OAuth2Error("The userinfo subject differs from the ID token's")
            data["userinfo"] = userinfo
        self._check_issuer_pinned(app, claims)
        return self.get_provider().sociallogin_from_response(request, data)

    def _decode_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as error:
            raise OAuth2Error("The ID token is malformed") from error
        if header.get("alg") not in ID_TOKEN_ALGORITHMS:
            raise OAuth2Error(f"ID token algorithm {header.get('alg')!r} is not allowed")
        if not isinstance(header.get("kid"), str):
            raise OAuth2Error("The ID token names no signing key")
        claims: dict[str, Any] = jwtkit.verify_and_decode(
            credential=id_token,
            keys_url=self.openid_config["jwks_uri"],
            issuer=self.openid_config["issuer"],
            audience=app.client_id,
            lookup_kid=jwtkit.lookup_kid_jwk,
            verify_signature=True,
        )
        for claim in ("sub", "iat", "exp"):
            if claim not in claims:
                raise OAuth2Error(f"The ID token has no {claim!r} claim")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != app.client_id:
            raise OAuth2Error("The ID token was issued to another party")
        return claims

    def _check_request_binding(self, claims: dict[str, Any], state: dict[str, Any]) -> None:
        expected_nonce = state.get("nonce")
        if not expected_nonce or not hmac.compare_digest(str(claims.get("nonce", "")), expected_nonce):
            raise OAuth2Error("The ID token's nonce does not match this sign-in")
        requested_at = state.get("reauthentication_requested_at")
        if requested_at is not None:
            auth_time = claims.get("auth_time")
            if not isinstance(auth_time, int) or auth_time < requested_at - AUTH_TIME_SKEW_SECONDS:
                raise OAuth2Error("The provider did not authenticate the member again")

    def _check_issuer_pinned(self, app: SocialApp, claims: dict[str, Any]) -> None:
        linked = SocialAccount.objects.filter(provider=app.provider_id, uid=claims["sub"]).first()
        linked_issuer = (linked.extra_data.get("id_token") or {}).get("iss") if linked else None
        if linked_issuer is not None and linked_issuer != claims["iss"]:
            raise OAuth2Error("This identity is linked under another issuer")


class PostroomCallbackView(OAuth2CallbackView):
    adapter: PostroomOpenIDConnectAdapter

    def _get_state(self, request: HttpRequest, provider: Any) -> tuple[dict[str, Any] | None, HttpResponse | None]:
        state, response = super()._get_state(request, provider)
        self.adapter.callback_state = state
        return state, response


def needs_provider_reauthentication(request: HttpRequest) -> bool:
    """Whether a signed-in member without password or 2FA must first reauthenticate at a provider.

    Members with a password or an authenticator are covered by allauth's reauthentication.
    """
    user = request.user
    if not user.is_authenticated or get_reauthentication_flows(user):
        return False
    records = [record for record in get_authentication_records(request, user) if record.get("reauthenticated")]
    return not records or time.time() - records[-1]["at"] >= account_settings.REAUTHENTICATION_TIMEOUT


def provider_reauthentication_url(request: HttpRequest, next_url: str) -> str | None:
    """Where the member confirms it is them at one of their linked providers, then returns to ``next_url``."""
    account = SocialAccount.objects.filter(user_id=request.user.pk).order_by("pk").first()
    if account is None:
        return None
    login_url = reverse("openid_connect_login", kwargs={"provider_id": account.provider})
    return f"{login_url}?{urlencode({'process': AuthProcess.REDIRECT, 'action': AuthAction.REAUTHENTICATE, 'next': next_url})}"


def check_social_login_purpose(request: HttpRequest, sociallogin: SocialLogin) -> None:
    """Called before allauth acts on a verified login: reauthentications and links must be the member's own."""
    state = sociallogin.state
    if state.get("reauthentication_requested_at") is not None:
        if not (request.user.is_authenticated and sociallogin.is_existing and sociallogin.user == request.user):
            raise ImmediateHttpResponse(render_authentication_error(request, sociallogin.account.get_provider(), error=AuthError.DENIED))
        record_authentication(
            request, request.user, method="socialaccount", reauthenticated=True,
            provider=sociallogin.account.provider, uid=sociallogin.account.uid,
        )
    elif state.get("process") == AuthProcess.CONNECT and needs_provider_reauthentication(request):
        url = provider_reauthentication_url(request, reverse("socialaccount_connections"))
        raise ImmediateHttpResponse(HttpResponseRedirect(url or reverse("socialaccount_connections")))


@login_not_required
def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    if request.method == "POST" and get_request_param(request, "process") == AuthProcess.CONNECT and needs_provider_reauthentication(request):
        url = provider_reauthentication_url(request, request.get_full_path())
        if url:
            return HttpResponseRedirect(url)
    try:
        return OAuth2LoginView.adapter_view(PostroomOpenIDConnectAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None


@login_not_required
def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    try:
        return PostroomCallbackView.adapter_view(PostroomOpenIDConnectAdapter(request, provider_id))(request)
    except SocialApp.DoesNotExist:
        raise Http404 from None


# Included under "accounts/" before allauth's URLs: same paths and names as allauth's
# openid_connect views, so allauth's templates and reverse() lead here.
urlpatterns = [
    path("oidc/<str:provider_id>/login/", login, name="openid_connect_login"),
    path("oidc/<str:provider_id>/login/callback/", callback, name="openid_connect_callback"),
]
