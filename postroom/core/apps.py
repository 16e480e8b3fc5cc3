from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "postroom.core"
    label = "core"
