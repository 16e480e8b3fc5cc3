from django.urls import include, path

from postroom.accounts.reauth import allauth_overrides
from postroom.ops.views import health
from postroom.web import views as web_views

urlpatterns = [
    path("", include("postroom.web.urls")),
    # Postroom's hardened OpenID Connect views shadow allauth's on the same paths.
    path("accounts/", include("postroom.accounts.oidc")),
    path("accounts/", include(allauth_overrides)),  # allauth views behind Postroom's gates; before allauth's own
    path("accounts/", include("allauth.urls")),
    path("settings/", include("postroom.accounts.urls")),
    path("o/<slug:slug>/", include("postroom.orgs.urls")),
    path("o/<slug:slug>/audit/", include("postroom.audit.urls")),
    path("o/<slug:slug>/conversations/", include("postroom.conversations.urls")),
    path("o/<slug:slug>/events/", include("postroom.live.urls")),
    path("o/<slug:slug>/contacts/", include("postroom.contacts.urls")),
    path("o/<slug:slug>/outbox/", include("postroom.outbox.urls")),
    path("o/<slug:slug>/responses/", include("postroom.responses.urls")),
    path("o/<slug:slug>/images/", include("postroom.imageproxy.urls")),
    path("o/<slug:slug>/comments/", include("postroom.comments.urls")),
    path("o/<slug:slug>/notifications/", include("postroom.notifications.urls")),
    path("o/<slug:slug>/mailboxes/", include("postroom.mailboxes.urls")),
    path("o/<slug:slug>/rules/", include("postroom.rules.urls")),
    path("invitations/", include("postroom.orgs.invitation_urls")),
    path("api/v1/", include("postroom.api.urls")),
    path(".well-known/security.txt", web_views.security_txt, name="security_txt"),
    path("csp-report/", web_views.csp_report, name="csp_report"),
    path("health", health, name="health"),
]

handler400 = "postroom.web.views.error_400"
handler403 = "postroom.web.views.error_403"
handler404 = "postroom.web.views.error_404"
handler500 = "postroom.web.views.error_500"
