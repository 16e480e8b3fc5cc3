from django.urls import path

from postroom.responses import views

app_name = "responses"

urlpatterns = [
    path("", views.response_list, name="list"),
    path("new/", views.response_new, name="new"),
    path("<uuid:response_id>/", views.response_edit, name="edit"),
    path("<uuid:response_id>/delete/", views.response_delete, name="delete"),
    path("<uuid:response_id>/attachments/remove/", views.response_attachment_remove, name="attachment_remove"),
]
