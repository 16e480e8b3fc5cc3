from django.apps import AppConfig


class RulesConfig(AppConfig):
    name = "postroom.rules"
    label = "rules"

    def ready(self) -> None:
        from postroom.rules import receivers  # noqa: F401  (connects the assigned/closed triggers)
