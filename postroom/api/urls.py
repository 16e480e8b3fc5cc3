"""The API at ``/api/v1/``: personal API tokens or the session, OpenAPI at ``openapi.json``.

Attacker: another website riding a signed-in member's cookies (CSRF), or anyone without a
session or a token. Defences (details in ``postroom.api.auth``): every operation requires an
API token (``Authorization: Bearer``) or a session, 401 without; a session request's unsafe
methods need the CSRF token (ninja's ``SessionAuth`` checks it before it authenticates), a token
request needs none. The OpenAPI document is served to the same callers only, like everything
not on the anonymous allowlist (R20). Routers live in each app's ``api.py`` and call the same
selectors and actions as the pages; list endpoints page with ``postroom.api.pagination``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI

from postroom.accounts.api_tokens import ApiTokenRefusedError
from postroom.api.auth import ApiTokenAuth, CookieSessionAuth, authenticate_token_header
from postroom.api.errors import NO_CREDENTIALS, install_error_handlers
from postroom.audit.api import router as audit_router
from postroom.comments.api import router as comments_router
from postroom.contacts.api import router as contacts_router
from postroom.conversations.api import router as conversations_router
from postroom.mailboxes.api import router as mailboxes_router
from postroom.notifications.api import router as notifications_router
from postroom.orgs.api import router as orgs_router
from postroom.responses.api import router as responses_router
from postroom.rules.api import router as rules_router


def _signed_in_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The OpenAPI document, for the same callers as the API: a token (any scope) or a session."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        header = request.headers.get("Authorization")
        try:
            if header is not None:
                authenticate_token_header(request, header)
            elif not request.user.is_authenticated:
                return JsonResponse({"detail": NO_CREDENTIALS}, status=401, headers={"WWW-Authenticate": 'Bearer realm="Postroom API"'})
        except ApiTokenRefusedError as error:
            return JsonResponse(
                {"detail": str(error)}, status=401, headers={"WWW-Authenticate": 'Bearer realm="Postroom API", error="invalid_token"'}
            )
        except PermissionDenied as error:
            return JsonResponse({"detail": str(error)}, status=403)
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
    description="Organizations, members, teams, invitations, mailboxes, the audit log, the team inbox (conversations, their messages and attachments, labels, sending mail), comments, notifications, contact books and contacts, responses (canned replies), rules. Authenticate with a "
    "personal API token (`Authorization: Bearer pr_…`, created under Login & Security → API tokens; a read-scope "
    "token may only GET) or a browser session (then send the CSRF token in the `X-CSRFToken` header on POST, PATCH "
    "and DELETE). Lists are paged: pass a page's `next` as `cursor` for the following one.",
    urls_namespace="api",
    auth=[ApiTokenAuth(), CookieSessionAuth()],
    docs_url=None,  # the Swagger page loads scripts from a CDN, which our CSP forbids
    openapi_url="/openapi.json",
    docs_decorator=_signed_in_only,
)
install_error_handlers(api)
api.add_router("", orgs_router)
api.add_router("", audit_router)
api.add_router("", mailboxes_router)
api.add_router("", comments_router)
api.add_router("", notifications_router)
api.add_router("", contacts_router)
api.add_router("", responses_router)
api.add_router("", rules_router)
api.add_router("", conversations_router)


def _patterns() -> list[URLPattern | URLResolver]:
    patterns, _app_name, _namespace = api.urls
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            pattern.callback = _json_method_not_allowed(pattern.callback)
    return patterns


app_name = "api"
urlpatterns = _patterns()
