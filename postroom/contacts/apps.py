from django.apps import AppConfig


class ContactsConfig(AppConfig):
    name = "postroom.contacts"
    label = "contacts"
