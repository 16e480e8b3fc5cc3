from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "postroom.outbox"
    label = "outbox"
