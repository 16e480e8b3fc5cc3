from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "postroom.live"
    label = "live"

    def ready(self) -> None:
        from postroom.live import receivers

        receivers.connect_receivers()
