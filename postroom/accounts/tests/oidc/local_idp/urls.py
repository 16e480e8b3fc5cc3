from django.contrib.auth import views as auth_views
from django.urls import include, path

from postroom.accounts.tests.oidc.local_idp import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    # Before DOT's own URLs so that the discovery document's token endpoint is this one.
    path("o/token/", views.TamperingTokenView.as_view()),
    path("o/.well-known/openid-configuration", views.TamperingDiscoveryView.as_view()),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("control/identity", views.control_identity),
    path("control/tamper", views.control_tamper),
]
