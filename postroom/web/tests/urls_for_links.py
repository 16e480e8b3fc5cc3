"""A second URL configuration for test_links (the same name, another path)."""

from django.http import HttpResponse
from django.urls import include, path

conversations = ([path("<slug:slug>/", lambda request, slug: HttpResponse(), name="list")], "conversations")
urlpatterns = [path("elsewhere/", include(conversations))]
