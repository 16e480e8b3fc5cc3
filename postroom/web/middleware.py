"""Middleware for the headers and error reporting that every response needs (SECURITY.md R51, R56).

Attackers considered: a page of another site that frames, embeds or opens ours to read or steer
it (clickjacking, cross-origin leaks, Spectre-style reads of our resources); a shared computer or
proxy that keeps a copy of a signed-in page; a cross-site-tracing probe that echoes cookies back.

Defences, all here or in Django's SecurityMiddleware: CSP (django-csp), X-Frame-Options, COOP and
CORP ``same-origin``, a restrictive Permissions-Policy, ``Cache-Control: no-store`` on every page
the application renders (static files keep WhiteNoise's caching), and 405 for TRACE/TRACK/CONNECT
before any view runs. These classes sit above WhiteNoise and read neither the session nor the
database, so static files and error pages raised by a failing database get the same headers.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Django logs a returned 5xx after the middleware chain has finished, outside the
        # context; its record still carries the request.
        request = getattr(record, "request", None)
        record.correlation_id = getattr(request, "correlation_id", None) or correlation_id.get()
        return True


class CorrelationIdMiddleware:
    """Tags every log line of a request with an id that the error page shows to the user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        value = secrets.token_hex(8)
        token = correlation_id.set(value)
        request.correlation_id = value  # type: ignore[attr-defined]
        try:
            response = self.get_response(request)
        finally:
            correlation_id.reset(token)
        response["X-Request-ID"] = value
        return response


class RejectDiagnosticMethodsMiddleware:
    """TRACE echoes the request (cookies included) and CONNECT/TRACK have no use here: 405 for all
    routes, whatever methods an individual view would otherwise accept."""

    REJECTED = frozenset({"TRACE", "TRACK", "CONNECT"})
    ALLOWED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (request.method or "").upper() in self.REJECTED:
            return HttpResponseNotAllowed(self.ALLOWED)
        return self.get_response(request)


PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "camera", "geolocation", "gyroscope", "magnetometer", "microphone",
        "payment", "usb", "interest-cohort", "browsing-topics",
    )
)


class SecurityHeadersMiddleware:
    """Headers Django's SecurityMiddleware does not set (SECURITY.md R51)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        if not request.path.startswith(settings.STATIC_URL):
            # Decided by path, not by request.user: a signed-in page must never be stored, and
            # looking up the user here would need the database while rendering its error page.
            response["Cache-Control"] = "no-store"
        return response
