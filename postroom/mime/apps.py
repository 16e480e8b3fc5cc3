from django.apps import AppConfig


class MimeConfig(AppConfig):
    name = "postroom.mime"
    label = "mime"
