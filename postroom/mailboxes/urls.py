from django.urls import path

from postroom.mailboxes import views

app_name = "mailboxes"

urlpatterns = [
    path("", views.mailbox_list, name="list"),
    path("status/", views.mailbox_status, name="status"),
    path("connect/", views.mailbox_connect, name="connect"),
    path("<uuid:mailbox_id>/reconnect/", views.mailbox_reconnect, name="reconnect"),
    path("<uuid:mailbox_id>/test/", views.mailbox_test, name="test"),
    path("<uuid:mailbox_id>/remove/", views.mailbox_remove, name="remove"),
    path("<uuid:mailbox_id>/import-range/", views.mailbox_import_range, name="import_range"),
    path("<uuid:mailbox_id>/reimport/", views.mailbox_reimport, name="reimport"),
    path("<uuid:mailbox_id>/team/", views.mailbox_team, name="team"),
]
