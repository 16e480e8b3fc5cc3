"""One error shape for the whole API, and the mapping from our exceptions to it.

A request without credentials, or with an API token that cannot be used, answers 401 with a
message saying which (and ``WWW-Authenticate: Bearer``). A body that is not JSON answers 400. Missing and forbidden objects both answer 404 (the selectors raise Http404 for either), a role
that does not allow an action answers 403 (PermissionDenied from the policy), and invalid input
answers 422 with one message per field. Messages are written for people and never carry
internals: no stack traces, SQL, or the ids of other organizations' objects.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from postroom.accounts.api_tokens import ApiTokenRefusedError


class Error(Schema):
    detail: str


class FieldError(Schema):
    field: str
    message: str


class InvalidInput(Schema):
    detail: str
    errors: list[FieldError]


# Declared on every operation so that the OpenAPI document describes each answer it can give.
ERRORS: dict[int, Any] = {400: Error, 401: Error, 403: Error, 404: Error, 422: InvalidInput}


def _invalid(api: NinjaAPI, request: HttpRequest, errors: list[dict[str, str]]) -> HttpResponse:
    summary = " ".join(f"{error['field']}: {error['message']}" if error["field"] else error["message"] for error in errors)
    return api.create_response(request, {"detail": summary or "Invalid input.", "errors": errors}, status=422)


NO_CREDENTIALS = "Sign in, or send a personal API token as `Authorization: Bearer <token>`."


def _unauthorized(api: NinjaAPI, request: HttpRequest, detail: str, *, invalid_token: bool) -> HttpResponse:
    response = api.create_response(request, {"detail": detail}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="Postroom API"' + (', error="invalid_token"' if invalid_token else "")
    return response


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(AuthenticationError)
    def no_credentials(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return _unauthorized(api, request, NO_CREDENTIALS, invalid_token=False)

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        detail = str(exc)
        if exc.status_code == 403 and detail.startswith("CSRF"):  # ninja's SessionAuth
            detail = "CSRF check failed: a session request that changes something must send the CSRF token in the X-CSRFToken header."
        elif exc.status_code == 400 and detail.startswith("Cannot parse request body"):  # ninja's body parser
            detail = "The request body is not valid JSON."
        return api.create_response(request, {"detail": detail}, status=exc.status_code)

    @api.exception_handler(ApiTokenRefusedError)
    def token_refused(request: HttpRequest, exc: ApiTokenRefusedError) -> HttpResponse:
        return _unauthorized(api, request, str(exc), invalid_token=True)

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return api.create_response(request, {"detail": "Not found."}, status=404)

    @api.exception_handler(PermissionDenied)
    def forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return api.create_response(request, {"detail": str(exc) or "Your role does not allow this."}, status=403)

    @api.exception_handler(RequestDataTooBig)
    def too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        detail = str(exc)
        if not detail.startswith("The upload is too large"):  # Django's own cap on a body read into memory
            detail = "The request body is too large: a JSON body may be at most 2.5 MB (send files with the multipart operations)."
        return api.create_response(request, {"detail": detail}, status=400)

    @api.exception_handler(DjangoValidationError)
    def rule_broken(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
        if hasattr(exc, "error_dict"):
            errors = [
                {"field": "" if field == "__all__" else field, "message": str(message)}
                for field, messages in exc.message_dict.items()
                for message in messages
            ]
        else:
            errors = [{"field": "", "message": str(message)} for message in exc.messages]
        return _invalid(api, request, errors)

    @api.exception_handler(NinjaValidationError)
    def malformed(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        errors = []
        for error in exc.errors:
            location = [str(part) for part in error.get("loc", ())]
            # ("body", "payload", "role") → "role"; ("query", "limit") → "limit"
            field = location[-1] if len(location) > 1 else ""
            errors.append({"field": field, "message": str(error.get("msg", "Invalid value."))})
        return _invalid(api, request, errors)
