"""Mailboxes through the REST API, as the cast sees them: own mailboxes for members, status of all
for admins, 404 for anyone else's; the owner's import range and connection test against a real
Dovecot and SMTP peer; admins' re-import; removal only right after a password confirmation and
never with a token; and no credential in any answer (R6, R21, R23)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from postroom.accounts.api_tokens import api_token_create
from postroom.accounts.tests.session_helpers import confirm_password, signed_in_client
from postroom.api.tests.helpers import ApiClient
from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.mailboxes import actions
from postroom.mailboxes.models import Folder, Mailbox
from postroom.mailboxes.tests.conftest import MailAccount
from postroom.mailboxes.tests.factories import STORED_PASSWORD, make_mailbox
from postroom.testing.dovecot import free_port

pytestmark = pytest.mark.django_db


def assert_no_credentials(response: Any, *secrets: str) -> None:
    body = response.content.decode()
    for secret in (STORED_PASSWORD, *secrets):
        assert secret not in body


def test_r21_members_list_their_own_mailboxes_admins_all_outsiders_none(cast: Cast) -> None:
    bobs = make_mailbox(cast.bob_membership, address="bob@mail.test")
    carols = make_mailbox(cast.carol_membership, address="carol@mail.test")
    make_mailbox(cast.charlie_membership, address="charlie@mail.test")

    bob = ApiClient(cast.bob).get("/orgs/acme/mailboxes")
    assert [item["email_address"] for item in bob.json()["items"]] == ["bob@mail.test"]
    assert bob.json()["items"][0]["is_own"] is True
    assert_no_credentials(bob)

    carol = ApiClient(cast.carol).get("/orgs/acme/mailboxes")
    assert [(item["email_address"], item["is_own"]) for item in carol.json()["items"]] == [
        ("bob@mail.test", False),
        ("carol@mail.test", True),
    ]
    assert [item["email_address"] for item in ApiClient(cast.carol).get("/orgs/acme/mailboxes", mine=True).json()["items"]] == [
        "carol@mail.test"
    ]
    assert_no_credentials(carol)

    assert ApiClient(cast.bob).get(f"/orgs/acme/mailboxes/{carols.pk}").status_code == 404
    assert ApiClient(cast.carol).get(f"/orgs/acme/mailboxes/{bobs.pk}").status_code == 200
    assert ApiClient(cast.charlie).get(f"/orgs/acme/mailboxes/{bobs.pk}").status_code == 404
    assert ApiClient(cast.charlie).get("/orgs/beta/mailboxes").json()["items"][0]["email_address"] == "charlie@mail.test"


def test_a_mailbox_shows_its_servers_state_and_folders_without_credentials(cast: Cast) -> None:
    mailbox = make_mailbox(cast.bob_membership, address="bob@mail.test", import_since=date(2025, 1, 1))
    Folder.objects.create(mailbox=mailbox, name="INBOX", role="inbox", messages_total=10, messages_done=4)
    response = ApiClient(cast.bob).get(f"/orgs/acme/mailboxes/{mailbox.pk}")
    body = response.json()
    assert body["imap"] == {"host": "localhost", "port": 993, "tls": "implicit"}
    assert body["owner"] == {"id": cast.bob_membership.pk, "email": "bob@acme.test"}
    assert (body["status"], body["auth_kind"], body["import_since"]) == ("active", "password", "2025-01-01")
    assert body["progress"] == {"done": 4, "total": 10}
    assert [folder["name"] for folder in body["folders"]] == ["INBOX"]
    assert_no_credentials(response)
    assert "credentials" not in response.content.decode()


def test_mailboxes_page_by_name(cast: Cast) -> None:
    for number in range(5):
        make_mailbox(cast.carol_membership, address=f"box{number}@mail.test")
    client = ApiClient(cast.carol)
    first = client.get("/orgs/acme/mailboxes", limit=2).json()
    second = client.get("/orgs/acme/mailboxes", limit=2, cursor=first["next"]).json()
    third = client.get("/orgs/acme/mailboxes", limit=2, cursor=second["next"]).json()
    names = [item["name"] for page in (first, second, third) for item in page["items"]]
    assert names == [f"box{number}@mail.test" for number in range(5)]
    assert third["next"] is None


def test_the_owner_changes_the_import_range_others_cannot(cast: Cast) -> None:
    mailbox = make_mailbox(cast.bob_membership, import_since=date(2025, 6, 1))
    response = ApiClient(cast.bob).patch(f"/orgs/acme/mailboxes/{mailbox.pk}", {"import_since": "2025-01-01"})
    assert response.status_code == 200
    assert response.json()["import_since"] == "2025-01-01"
    assert ApiClient(cast.bob).patch(f"/orgs/acme/mailboxes/{mailbox.pk}", {"import_since": None}).json()["import_since"] is None
    assert AuditEvent.objects.filter(action="mailbox.import_range_changed").count() == 2

    tomorrow = (timezone.now().date() + timedelta(days=1)).isoformat()
    refused = ApiClient(cast.bob).patch(f"/orgs/acme/mailboxes/{mailbox.pk}", {"import_since": tomorrow})
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (422, "import_since")
    assert ApiClient(cast.bob).patch(f"/orgs/acme/mailboxes/{mailbox.pk}", {}).status_code == 422
    # Someone else's mailbox, admins included: only its owner chooses the range.
    assert ApiClient(cast.carol).patch(f"/orgs/acme/mailboxes/{mailbox.pk}", {"import_since": "2024-01-01"}).status_code == 404
    assert Mailbox.objects.get().import_since is None


def test_admins_have_a_mailbox_imported_again_members_cannot(cast: Cast) -> None:
    mailbox = make_mailbox(cast.bob_membership)
    Folder.objects.create(mailbox=mailbox, name="INBOX", uidvalidity=3, highest_uid=40, messages_total=40, messages_done=40)
    assert ApiClient(cast.bob).post(f"/orgs/acme/mailboxes/{mailbox.pk}/reimport", {"since": None}).status_code == 403
    response = ApiClient(cast.carol).post(f"/orgs/acme/mailboxes/{mailbox.pk}/reimport", {"since": "2025-02-03"})
    assert response.status_code == 200
    assert response.json()["import_since"] == "2025-02-03"
    assert Folder.objects.get().highest_uid == 0


def test_the_connection_test_signs_in_to_both_real_servers(cast: Cast, mail_account: MailAccount) -> None:
    mailbox = actions.mailbox_connect(
        actor=cast.bob_membership,
        name="Support",
        email_address=mail_account.user.address,
        sign_in=mail_account.password_sign_in(),
        import_since=None,
    )
    response = ApiClient(cast.bob).post(f"/orgs/acme/mailboxes/{mailbox.pk}/test")
    assert response.json() == {"ok": True, "problems": []}
    assert_no_credentials(response, mail_account.user.password)
    assert ApiClient(cast.carol).post(f"/orgs/acme/mailboxes/{mailbox.pk}/test").status_code == 404  # the owner's alone

    Mailbox.objects.filter(pk=mailbox.pk).update(imap_port=free_port())  # nobody listens there
    response = ApiClient(cast.bob).post(f"/orgs/acme/mailboxes/{mailbox.pk}/test")
    assert response.json()["ok"] is False
    assert len(response.json()["problems"]) == 1
    assert_no_credentials(response, mail_account.user.password)
    assert AuditEvent.objects.filter(action="mailbox.tested").count() == 2


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


def test_r06_removing_needs_a_fresh_confirmation_and_never_works_with_a_token(cast: Cast, clock: time_machine.Traveller) -> None:
    mailbox = make_mailbox(cast.bob_membership)
    token = api_token_create(user=cast.bob, name="Script", scope="write", expires_at=None).token
    response = ApiClient(token=token).delete(f"/orgs/acme/mailboxes/{mailbox.pk}")
    assert response.status_code == 403
    assert "API token cannot" in response.json()["detail"]

    session = ApiClient(csrf=False)
    session.client = signed_in_client(cast.bob)
    confirm_password(session.client)
    clock.shift(timedelta(minutes=6))
    response = session.delete(f"/orgs/acme/mailboxes/{mailbox.pk}")
    assert response.status_code == 403
    assert "confirm it" in response.json()["detail"]
    assert Mailbox.objects.exists()

    confirm_password(session.client)
    assert session.delete(f"/orgs/acme/mailboxes/{mailbox.pk}").status_code == 204
    assert not Mailbox.objects.exists()
    assert AuditEvent.objects.filter(action="mailbox.removed").exists()
