from django.apps import AppConfig


class ResponsesConfig(AppConfig):
    name = "postroom.responses"
    label = "responses"
