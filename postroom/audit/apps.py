from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "postroom.audit"
    label = "audit"
