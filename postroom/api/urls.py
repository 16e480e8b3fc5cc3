"""The API at ``/api/v1/``: session authentication, CSRF on unsafe methods, OpenAPI at ``openapi.json``.

Attacker: another website riding a signed-in member's cookies (CSRF), or anyone without a
session. Defences: ninja's ``SessionAuth`` runs Django's CSRF check for every unsafe method
before it authenticates (the ``X-CSRFToken`` header must match the CSRF cookie), and every
operation requires the session (401 without it). The OpenAPI document is served to signed-in
people only, like everything not on the anonymous allowlist (R20). Routers live in each app's
``api.py`` and call the same selectors and actions as the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI
from ninja.security import SessionAuth

from postroom.api.errors import install_error_handlers
from postroom.audit.api import router as audit_router
from postroom.comments.api import router as comments_router
from postroom.notifications.api import router as notifications_router
from postroom.orgs.api import router as orgs_router


def _signed_in_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"detail": "Unauthorized"}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def _json_method_not_allowed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """ninja answers an unsupported method with an HTML 405; keep every API answer JSON."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 405:
            return JsonResponse(
                {"detail": f"Method {request.method} is not allowed here."}, status=405, headers={"Allow": response["Allow"]}
            )
        return response

    return wrapper


api = NinjaAPI(
    title="Postroom API",
    version="1",
    description="Organizations, members, teams, invitations, the audit log, comments and notifications. Session authentication; "
    "send the CSRF token in the X-CSRFToken header on POST, PATCH and DELETE.",
    urls_namespace="api",
    auth=SessionAuth(),
    docs_url=None,  # the Swagger page loads scripts from a CDN, which our CSP forbids
    openapi_url="/openapi.json",
    docs_decorator=_signed_in_only,
)
install_error_handlers(api)
api.add_router("", orgs_router)
api.add_router("", audit_router)
api.add_router("", comments_router)
api.add_router("", notifications_router)


def _patterns() -> list[URLPattern | URLResolver]:
    patterns, _app_name, _namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback = _json_method_not_allowed(pattern.callback)
    return patterns


app_name = "api"
urlpatterns = _patterns()
