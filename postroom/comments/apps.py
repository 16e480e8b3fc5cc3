from django.apps import AppConfig


class CommentsConfig(AppConfig):
    name = "postroom.comments"
    label = "comments"
