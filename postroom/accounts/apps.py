from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "postroom.accounts"
    label = "accounts"

    def ready(self) -> None:
        from postroom.accounts import signals  # noqa: F401  (connects the receivers)
        from postroom.accounts.sessions import connect_receivers

        connect_receivers()
