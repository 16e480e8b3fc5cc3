from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "postroom.conversations"
    label = "conversations"
