from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "postroom.orgs"
    label = "orgs"

    def ready(self) -> None:
        from postroom.orgs import viewer

        viewer.connect()
