from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "postroom.notifications"
    label = "notifications"

    def ready(self) -> None:
        from postroom.notifications import receivers

        receivers.connect()
