from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "postroom.orgs"
    label = "orgs"
