"""The product's URLs plus one view that raises, to see what a real 500 looks like (tests only)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from postroom.urls import handler400, handler403, handler404, handler500
from postroom.urls import urlpatterns as product_urlpatterns

# Everything a careless error page could leak: an exception message with a path, a setting name,
# a secret-looking value and SQL.
FAILURE_MESSAGE = "canary-failure /srv/postroom/secret/path SECRET_KEY=canary-value SELECT * FROM accounts_user"


def explode(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(FAILURE_MESSAGE)


urlpatterns = [path("test-only/explode/", explode), *product_urlpatterns]
__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
