"""The test-only parts of the local provider: identity set-up and ID-token tampering.

Both are behind a bearer token that only the test process knows, and the provider listens on
loopback only.
"""

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import ConnectDiscoveryInfoView, TokenView

from postroom.accounts.tests.oidc.local_idp.validator import UNVERIFIED_EMAIL_GROUP

TAMPER_MODES = (
    "foreign_key",  # signed by a key that is not in the provider's JWKS
    "alg_none",  # unsigned
    "hmac_with_public_key",  # HS256 keyed with the public RSA key (key confusion)
    "swapped_subject",  # claims changed after signing
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "wrong_nonce",
    "stale_auth_time",
    "discovery_issuer",  # the discovery document names another issuer
)

_next_tamper: list[str] = []
_lock = threading.Lock()


def _authorized(request: HttpRequest) -> bool:
    expected = f"Bearer {os.environ['LOCAL_IDP_CONTROL_TOKEN']}"
    return hmac.compare_digest(request.headers.get("Authorization", ""), expected)


@csrf_exempt
@require_POST
def control_identity(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        return HttpResponse(status=403)
    data = json.loads(request.body)
    user, _ = User.objects.get_or_create(username=data["sub"])
    user.email = data["email"]
    user.set_password(data["password"])
    user.save()
    unverified, _ = Group.objects.get_or_create(name=UNVERIFIED_EMAIL_GROUP)
    if data.get("email_verified", True):
        user.groups.remove(unverified)
    else:
        user.groups.add(unverified)
    return JsonResponse({"sub": user.username})


@csrf_exempt
@require_POST
def control_tamper(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        return HttpResponse(status=403)
    mode = json.loads(request.body)["mode"]
    if mode not in TAMPER_MODES:
        return JsonResponse({"error": f"unknown mode {mode!r}"}, status=400)
    with _lock:
        _next_tamper[:] = [mode]
    return JsonResponse({"mode": mode})


def _take_tamper_mode(*modes: str) -> str | None:
    with _lock:
        if _next_tamper and _next_tamper[0] in modes:
            return _next_tamper.pop()
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _tampered(id_token: str, mode: str) -> str:
    header = jwt.get_unverified_header(id_token)
    claims = jwt.decode(id_token, options={"verify_signature": False})
    signing_key = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    headers = {"kid": header["kid"]}
    if mode == "foreign_key":
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, other_key, algorithm="RS256", headers=headers)
    if mode == "alg_none":
        return jwt.encode(claims, None, algorithm="none", headers=headers)
    if mode == "hmac_with_public_key":
        public_pem = (
            serialization.load_pem_private_key(signing_key.encode(), password=None)
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        hmac_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', **headers}).encode())}.{_b64(json.dumps(claims).encode())}"
        return f"{hmac_input}.{_b64(hmac.new(public_pem, hmac_input.encode(), hashlib.sha256).digest())}"
    if mode == "swapped_subject":
        encoded_header, _, original_signature = id_token.split(".")
        return f"{encoded_header}.{_b64(json.dumps({**claims, 'sub': 'someone-else'}).encode())}.{original_signature}"
    now = int(time.time())
    changes: dict[str, Any] = {
        "wrong_issuer": {"iss": claims["iss"] + "-evil"},
        "wrong_audience": {"aud": "another-client"},
        "expired": {"exp": now - 600, "iat": now - 1200},
        "wrong_nonce": {"nonce": "not-the-nonce-that-was-sent"},
        "stale_auth_time": {"auth_time": now - 3600},
    }[mode]
    return jwt.encode({**claims, **changes}, signing_key, algorithm="RS256", headers=headers)


@method_decorator(csrf_exempt, name="dispatch")
class TamperingTokenView(TokenView):
    """DOT's token endpoint, whose ID token a test can have tampered with once."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        mode = _take_tamper_mode(*(mode for mode in TAMPER_MODES if mode != "discovery_issuer")) if response.status_code == 200 else None
        if mode:
            body = json.loads(response.content)
            body["id_token"] = _tampered(body["id_token"], mode)
            response.content = json.dumps(body).encode()
        return response


class TamperingDiscoveryView(ConnectDiscoveryInfoView):
    """DOT's discovery document, which a test can have name another issuer once."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        if _take_tamper_mode("discovery_issuer"):
            document = json.loads(response.content)
            document["issuer"] = f"http://127.0.0.1:{request.get_port()}/elsewhere"
            response.content = json.dumps(document).encode()
        return response
