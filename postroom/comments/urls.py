from django.urls import path

from postroom.comments import views

app_name = "comments"

# Ids are matched as strings and checked by the selectors (404 for anything else).
urlpatterns = [
    path("in/<str:conversation_id>/", views.thread, name="thread"),
    path("<str:comment_id>/edit/", views.comment_edit, name="edit"),
    path("<str:comment_id>/delete/", views.comment_delete, name="delete"),
    path("attachments/<str:comment_attachment_id>/", views.attachment_download, name="attachment"),
]
