"""Test helpers for the API: a client that sends JSON with a CSRF token (or an API token), and
checks every answer against our own OpenAPI document (status documented for that operation, body
valid against the schema, JSON content type), so the document cannot drift from what the API
really does; and against R23: no key of any answer names a password, token, secret, hash, seed
or credential."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.test import Client
from django.utils.crypto import get_random_string
from jsonschema import Draft202012Validator, FormatChecker

from postroom.accounts.models import User

API = "/api/v1"

# R23: answers carry none of these. Keys only: values are checked where the secrets are known.
FORBIDDEN_KEY = re.compile(r"password|passwd|secret|token|hash|seed|credential|private|otp", re.IGNORECASE)
# Allowed on purpose, with the reason. The audit log's sign-in rows carry an HMAC of the address
# that was typed, so an admin can correlate attempts without the log holding the address.
ALLOWED_KEYS = {("details", "login_hash")}


def secret_keys(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Every key under ``value`` (a decoded JSON answer) that names a secret, as a dotted path."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if FORBIDDEN_KEY.search(str(key)) and (*path[-1:], str(key)) not in ALLOWED_KEYS:
                found.append(".".join((*path, str(key))))
            found += secret_keys(item, (*path, str(key)))
    elif isinstance(value, list):
        for item in value:
            found += secret_keys(item, path)
    return found


def openapi_document() -> dict[str, Any]:
    """The document exactly as /api/v1/openapi.json serves it (JSON: status codes become strings)."""
    from ninja.responses import NinjaJSONEncoder

    from postroom.api.urls import api

    return json.loads(json.dumps(api.get_openapi_schema(path_params={}), cls=NinjaJSONEncoder))


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


@dataclass
class OpenAPIChecker:
    document: dict[str, Any] = field(default_factory=openapi_document)

    def __post_init__(self) -> None:
        # Literal paths before templated ones (/messages/multipart before /messages/{message_id}),
        # as the URL resolver decides them.
        templates = sorted(self.document["paths"], key=lambda template: template.count("{"))
        self.templates = [(_template_pattern(template), template) for template in templates]

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        path = path.split("?", 1)[0]
        for pattern, template in self.templates:
            if pattern.match(path):
                return self.document["paths"][template].get(method.lower())
        raise AssertionError(f"{path} is not in the OpenAPI document")

    def check(self, method: str, path: str, response: HttpResponse) -> None:
        operation = self.operation(method, path)
        status = response.status_code
        if operation is None:
            assert status == 405, f"{method} {path}: undocumented method answered {status}, not 405"
            assert response["Content-Type"] == "application/json", response["Content-Type"]
            return
        documented = operation["responses"]
        assert str(status) in documented, f"{method} {path}: status {status} is not documented ({sorted(documented)}): {response.content[:300]!r}"
        if status == 204:
            assert response.content == b""
            return
        content = documented[str(status)]["content"]
        if "application/json" not in content:  # a download: exactly the documented type, never JSON
            assert list(content) == [response["Content-Type"]], f"{method} {path}: {response['Content-Type']} is not {list(content)}"
            return
        assert response["Content-Type"] == "application/json; charset=utf-8", response["Content-Type"]
        schema = content["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.document["components"]}, format_checker=FormatChecker())
        body = json.loads(response.content)
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, f"{method} {path} ({status}) does not match the OpenAPI document: {errors[0].message}"
        assert not secret_keys(body), f"{method} {path} answered keys that name secrets: {secret_keys(body)}"


@cache  # built once per test run: generating the document takes a while
def checker() -> OpenAPIChecker:
    return OpenAPIChecker()


class ApiClient:
    """A signed-in (or anonymous) API client: JSON bodies, a valid CSRF token, checked answers.

    With ``token`` it sends ``Authorization: Bearer <token>`` instead, with no cookie at all
    (unless ``user`` is given too)."""

    def __init__(self, user: User | None = None, *, csrf: bool = True, token: str | None = None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        if user is not None:
            self.client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
        self.headers: dict[str, str] = {}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
            csrf = False
        if csrf:
            token = get_random_string(32, CSRF_ALLOWED_CHARS)
            self.client.cookies[settings.CSRF_COOKIE_NAME] = token
            self.headers["X-CSRFToken"] = token

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        url = path if path.startswith(API) else API + path
        if method == "GET":
            response = self.client.get(url, query, headers=self.headers)
        elif body is not None:
            response = self.client.generic(method, url, json.dumps(body), content_type="application/json", headers=self.headers)
        else:
            response = self.client.generic(method, url, headers=self.headers)
        checker().check(method, url, response)
        return response

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def patch(self, path: str, body: Any = None) -> Any:
        return self.request("PATCH", path, body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
