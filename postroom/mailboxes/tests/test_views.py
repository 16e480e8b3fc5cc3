"""Settings › Mailboxes through HTTP, as the cast sees it: who sees which mailbox, that no
credential ever reaches a response, the password confirmation before credentials change, the
preset select without JavaScript, and the polled status partial."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from postroom.accounts.tests.session_helpers import confirm_password, signed_in_client
from postroom.mailboxes.models import Folder, Mailbox, MailboxStatus
from postroom.mailboxes.tests.conftest import MailAccount
from postroom.mailboxes.tests.factories import STORED_PASSWORD, make_mailbox

pytestmark = pytest.mark.django_db

def url(name: str, *args: Any) -> str:
    return reverse(f"mailboxes:{name}", args=["acme", *args])


def assert_no_secret(response: Any, *secrets: str) -> None:
    body = response.content.decode()
    for secret in (STORED_PASSWORD, *secrets):
        assert secret not in body


def test_connect_page_fills_a_presets_servers_without_javascript(cast, client_as) -> None:  # type: ignore[no-untyped-def]
    response = client_as(cast.bob).get(url("connect") + "?preset=outlook")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'value="outlook.office365.com"' in body
    assert 'value="smtp.office365.com"' in body
    assert 'data-imap_host="imap.gmail.com"' in body  # what app.js uses to fill without a reload
    assert "<script>" not in body


def test_r44_connecting_through_the_form_stores_the_mailbox_and_never_echoes_the_password(  # type: ignore[no-untyped-def]
    cast, client_as, mail_account: MailAccount
) -> None:
    client = client_as(cast.bob)
    response = client.post(url("connect"), mail_account.form_data())
    assert response.status_code == 302, response.content.decode()[:3000]
    mailbox = Mailbox.objects.get()
    assert mailbox.owner_id == cast.bob_membership.pk
    listing = client.get(url("list"))
    assert mail_account.user.address in listing.content.decode()
    assert_no_secret(listing, mail_account.user.password)


def test_r49_a_failed_test_is_shown_on_the_field_and_the_password_is_not_sent_back(cast, client_as, mail_account: MailAccount) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.bob)
    wrong = "not-the-right-password-at-all"
    response = client.post(url("connect"), mail_account.form_data(password=wrong))
    body = response.content.decode()
    assert response.status_code == 200
    assert "rejected the username or the password" in body
    assert wrong not in body
    assert not Mailbox.objects.exists()

    response = client.post(url("connect"), mail_account.form_data(imap_host="127.0.0.1"))
    assert "issued for another name" in response.content.decode()

    response = client.post(url("connect"), mail_account.form_data(intent="test"))
    assert "Both servers accepted the sign-in. Nothing was saved yet." in response.content.decode()
    assert not Mailbox.objects.exists()


def test_plaintext_is_labelled_insecure(cast, client_as) -> None:  # type: ignore[no-untyped-def]
    make_mailbox(cast.bob_membership, imap_tls="insecure_plaintext")
    body = client_as(cast.bob).get(url("list")).content.decode()
    assert "Insecure: unencrypted" in body
    assert "insecure" in client_as(cast.bob).get(url("connect")).content.decode()


def test_r21_a_member_sees_only_their_own_mailboxes_admins_see_status_outsiders_get_404(cast, client_as) -> None:  # type: ignore[no-untyped-def]
    bobs = make_mailbox(cast.bob_membership, address="bob-box@acme.test")
    alices = make_mailbox(cast.alice_membership, address="alice-box@acme.test")
    Mailbox.objects.filter(pk=bobs.pk).update(status=MailboxStatus.NEEDS_RECONNECT, status_reason="The provider revoked the access.")

    bob_view = client_as(cast.bob).get(url("list"))
    assert "bob-box@acme.test" in bob_view.content.decode()
    assert "The provider revoked the access." in bob_view.content.decode()
    assert "alice-box@acme.test" not in bob_view.content.decode()
    assert_no_secret(bob_view)

    for admin in (cast.carol, cast.alice):
        admin_view = client_as(admin).get(url("list"))
        body = admin_view.content.decode()
        assert "bob-box@acme.test" in body
        assert "Needs reconnecting" in body
        assert_no_secret(admin_view)
        assert_no_secret(client_as(admin).get(url("status")))

    carol = _fresh_client(cast.carol)
    # An admin reaches a member's mailbox only for status, re-import and removal, never its credentials.
    assert carol.get(url("reconnect", bobs.pk)).status_code == 404
    assert carol.post(url("test", bobs.pk)).status_code == 404
    assert carol.post(url("import_range", bobs.pk), {"import_range": "1y"}).status_code == 404

    bob = client_as(cast.bob)
    for name in ("test", "import_range", "reimport"):
        assert bob.post(url(name, alices.pk)).status_code in {403, 404}
    assert bob.post(url("reimport", bobs.pk), {"since": "2025-01-01"}).status_code == 403

    charlie = _fresh_client(cast.charlie)
    assert charlie.get(url("list")).status_code == 404
    assert charlie.get(url("status")).status_code == 404
    assert charlie.get(url("connect")).status_code == 404
    assert charlie.get(url("reconnect", bobs.pk)).status_code == 404
    for name in ("test", "import_range", "reimport", "remove"):
        assert charlie.post(url(name, bobs.pk)).status_code == 404
    assert Mailbox.objects.count() == 2


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


def _fresh_client(user: Any) -> Client:
    client = signed_in_client(user)
    confirm_password(client)
    return client


def test_r06_changing_a_mailboxs_credentials_needs_a_recent_password_confirmation(  # type: ignore[no-untyped-def]
    cast, clock: time_machine.Traveller, mail_account: MailAccount
) -> None:
    client = _fresh_client(cast.bob)
    assert client.post(url("connect"), mail_account.form_data()).status_code == 302
    mailbox = Mailbox.objects.get()
    assert client.get(url("reconnect", mailbox.pk)).status_code == 200

    clock.shift(timedelta(minutes=5, seconds=1))
    new_password = "a different mail password"
    data = mail_account.form_data(password=new_password)
    for response in (client.get(url("reconnect", mailbox.pk)), client.post(url("reconnect", mailbox.pk), data)):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/reauthenticate/")
    assert (Mailbox.objects.get().credentials or {})["password"] == mail_account.user.password

    confirm_password(client)
    response = client.post(url("reconnect", mailbox.pk), data)  # the server still has the old password
    assert response.status_code == 200
    assert "rejected the username or the password" in response.content.decode()
    assert new_password not in response.content.decode()
    response = client.post(url("reconnect", mailbox.pk), mail_account.form_data())
    assert response.status_code == 302
    assert response["Location"] == url("list")


def test_r06_removing_a_mailbox_needs_confirmation_then_a_post(cast, clock: time_machine.Traveller) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.bob_membership)
    client = _fresh_client(cast.bob)
    clock.shift(timedelta(minutes=6))
    response = client.post(url("remove", mailbox.pk))
    assert response["Location"].startswith("/accounts/reauthenticate/")
    assert Mailbox.objects.exists()

    confirm_password(client)
    page = client.get(url("remove", mailbox.pk))
    assert page.status_code == 200
    assert "Nothing is changed or deleted on the mail server" in page.content.decode()
    assert Mailbox.objects.exists()
    assert client.post(url("remove", mailbox.pk)).status_code == 302
    assert not Mailbox.objects.exists()


def test_the_status_partial_shows_progress_and_polls_only_while_importing(cast, client_as) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.bob_membership, import_started_at=timezone.now() - timedelta(minutes=10))
    inbox = Folder.objects.create(mailbox=mailbox, name="INBOX", messages_total=1000, messages_done=250)
    Folder.objects.create(mailbox=mailbox, name="Sent", messages_total=200, messages_done=50)
    client = client_as(cast.bob)

    body = client.get(url("status"), HTTP_HX_REQUEST="true").content.decode()
    assert "300 / 1200 messages (25%)" in body
    assert 'hx-trigger="every 3s"' in body
    assert "30 messages/min" in body
    assert "about 30 min left" in body
    assert "<html" not in body

    Folder.objects.filter(mailbox=mailbox).update(messages_done=1000)
    Folder.objects.filter(pk=inbox.pk).update(messages_done=1000)
    Mailbox.objects.filter(pk=mailbox.pk).update(last_synced_at=timezone.now())
    body = client.get(url("status")).content.decode()
    assert "Up to date" in body
    assert "hx-trigger" not in body


def test_an_admin_has_a_mailbox_imported_again_and_the_owner_chooses_the_range(cast, client_as) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(cast.bob_membership)
    Folder.objects.create(mailbox=mailbox, name="INBOX", uidvalidity=3, highest_uid=40, messages_total=40, messages_done=40)
    assert client_as(cast.carol).post(url("reimport", mailbox.pk), {"since": "2025-02-03"}).status_code == 302
    assert Folder.objects.get().highest_uid == 0
    assert str(Mailbox.objects.get().import_since) == "2025-02-03"

    assert client_as(cast.bob).post(url("import_range", mailbox.pk), {"import_range": "all"}).status_code == 302
    assert Mailbox.objects.get().import_since is None
