from django.urls import path

from postroom.rules import views

app_name = "rules"

urlpatterns = [
    path("", views.rule_list, name="list"),
    path("new/", views.rule_create, name="create"),
    path("<uuid:rule_id>/", views.rule_edit, name="edit"),
    path("<uuid:rule_id>/move/", views.rule_move, name="move"),
    path("<uuid:rule_id>/delete/", views.rule_delete, name="delete"),
    path("<uuid:rule_id>/preview/", views.rule_preview, name="preview"),
    path("<uuid:rule_id>/log/", views.rule_log, name="log"),
]
