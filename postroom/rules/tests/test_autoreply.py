"""The auto-reply safety checks (RFC 3834; R38): never to automatic, bulk or list mail, never to
our own addresses, at most once per sender per day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from email.message import EmailMessage

import pytest

from postroom.rules.autoreply import auto_reply_claim, auto_reply_refusal
from postroom.rules.models import AutoReplySent, Rule
from postroom.rules.tests.conftest import Place

OWN = ["support@acme.test", "alice@acme.test"]


def headers(**fields: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = fields.pop("From", "Dana <dana@customer.example>")
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def test_an_ordinary_message_may_be_answered() -> None:
    assert auto_reply_refusal(headers(), own_addresses=OWN) == ""
    assert auto_reply_refusal(headers(Auto_Submitted="no"), own_addresses=OWN) == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"Auto_Submitted": "auto-replied"}, {"Auto_Submitted": "auto-generated"}, {"Precedence": "bulk"}, {"Precedence": "list"},
        {"List_Id": "<news.example.com>"}, {"List_Unsubscribe": "<mailto:u@example.com>"}, {"X_Auto_Response_Suppress": "All"},
        {"Return_Path": "<>"}, {"From": "MAILER-DAEMON@mx.example"}, {"From": "postmaster@example.com"},
        {"From": "noreply@shop.example"}, {"From": "support@acme.test"}, {"From": "x@y.example", "Reply_To": "alice@acme.test"},
    ],
)  # fmt: skip
def test_r38_automatic_bulk_list_and_own_mail_gets_no_auto_reply(fields: dict[str, str]) -> None:
    assert auto_reply_refusal(headers(**fields), own_addresses=OWN) != ""


@pytest.mark.django_db
def test_r38_at_most_one_auto_reply_per_sender_per_day(place: Place, make_rule: Callable[..., Rule]) -> None:
    rule = make_rule(place.cast.carol_membership, organization=True)
    day = date(2026, 11, 21)
    assert auto_reply_claim(rule=rule, sender="Dana@Customer.example", day=day)
    assert not auto_reply_claim(rule=rule, sender="dana@customer.example", day=day)
    assert auto_reply_claim(rule=rule, sender="dana@customer.example", day=date(2026, 11, 22))
    assert auto_reply_claim(rule=rule, sender="eve@elsewhere.example", day=day)
    assert "customer" not in str(list(AutoReplySent.objects.values_list("sender_index", flat=True)))
