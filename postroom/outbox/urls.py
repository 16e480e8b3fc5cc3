from django.urls import path

from postroom.outbox import views

app_name = "outbox"

urlpatterns = [
    path("", views.outgoing_list, name="list"),
    path("new/", views.compose_new, name="new"),
    path("reply/<uuid:conversation_id>/", views.compose_reply, name="reply"),
    path("<uuid:outgoing_id>/retry/", views.outgoing_retry, name="retry"),
    path("drafts/", views.draft_list, name="drafts"),
    path("drafts/save/", views.draft_save, name="draft_save"),
    path("drafts/discard/", views.draft_discard, name="draft_discard"),
    path("drafts/<str:draft_id>/", views.draft_open, name="draft"),
    path("drafts/<str:draft_id>/delete/", views.draft_delete, name="draft_delete"),
    path("drafts/<str:draft_id>/detach/", views.draft_detach, name="draft_detach"),
]
