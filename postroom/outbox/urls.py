from django.urls import path

from postroom.outbox import views

app_name = "outbox"

urlpatterns = [
    path("", views.outgoing_list, name="list"),
    path("new/", views.compose_new, name="new"),
    path("reply/<uuid:conversation_id>/", views.compose_reply, name="reply"),
    path("<uuid:outgoing_id>/retry/", views.outgoing_retry, name="retry"),
]
