from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "postroom.ops"
    label = "ops"
