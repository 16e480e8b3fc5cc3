"""The restricted variable engine (R39) and the rendering around it."""

from __future__ import annotations

import datetime

import pytest
from django.conf import settings
from django.core.exceptions import PermissionDenied

from postroom.conftest import Cast
from postroom.responses import actions, variables
from postroom.responses.models import Scope
from postroom.responses.tests.conftest import Responses, make

pytestmark = pytest.mark.django_db

VALUES = {"recipient_first_name": "Dana", "sender_name": "Bob", "today": "2026-11-21"}

R39_PAYLOADS = [
    "{% debug %}",
    "{{ settings.SECRET_KEY }}",
    '{% include "/etc/passwd" %}',
    "{{ request.META }}",
    "{{7*7}}",
    "{{ recipient_first_name|upper }}",
    "{{ recipient_first_name.__class__ }}",
    "{% load static %}{% static 'x' %}",
    "{{ sender_name }}{{",
]


def test_known_variables_are_filled_unknown_ones_stay_as_written() -> None:
    source = "Hi {{ recipient_first_name }}, {{recipient_first_name}}! {{ unknown }} {{ today }} {{ input:Order }}"
    filled = variables.fill(source, VALUES, {"Order": "4711"}, html=False)
    assert filled == "Hi Dana, Dana! {{ unknown }} 2026-11-21 4711"


def test_an_input_without_a_value_stays_visible() -> None:
    assert variables.fill("No. {{ input:Order number }}", VALUES, {}, html=False) == "No. {{ input:Order number }}"


@pytest.mark.parametrize("payload", R39_PAYLOADS)
def test_r39_template_syntax_is_never_evaluated(payload: str) -> None:
    expected = "Bob{{" if payload == "{{ sender_name }}{{" else payload
    assert variables.fill(payload, VALUES, {}, html=False) == expected


def test_values_are_escaped_in_html_and_never_scanned_again() -> None:
    hostile = {"recipient_first_name": '<img src=x onerror=alert(1)>{{ sender_name }}"'}
    filled = variables.fill("<p>{{ recipient_first_name }}</p>", {**VALUES, **hostile}, {}, html=True)
    assert filled == "<p>&lt;img src=x onerror=alert(1)&gt;{{ sender_name }}&quot;</p>"


def test_r33_values_lose_their_line_breaks_in_a_subject() -> None:
    assert variables.fill("Re {{ input:Ref }}", {}, {"Ref": "a\r\nBcc: evil@example.test"}, html=False) == "Re a Bcc: evil@example.test"


def test_input_labels_in_order_and_unescaped_from_html() -> None:
    assert variables.input_labels(("{{ input:Order }} {{input: Customer &quot;id&quot; }}", True), ("{{ input:Order }}", False)) == [
        "Order",
        'Customer "id"',
    ]


def test_unknown_variables_are_reported() -> None:
    assert variables.unknown_variables(("{{ first_name }} {{ today }} {{ input:X }} {{7*7}}", False)) == ["{{ first_name }}", "{{7*7}}"]


def test_response_render_fills_everything_in(cast: Cast, responses: Responses) -> None:
    rendered = actions.response_render(
        actor=cast.bob_membership, response=responses.support_team,
        context=actions.RenderContext(recipient=("Dana Customer", "dana@customer.example"), inputs={"Order number": "4711"},
                                      today=datetime.date(2026, 11, 21)),
    )  # fmt: skip
    assert rendered.html == "<p>Hi Dana, order 4711.</p>"
    assert rendered.text == "Hi Dana, order 4711."
    assert rendered.missing_inputs == ()
    welcome = actions.response_render(actor=cast.bob_membership, response=responses.organization, context=actions.RenderContext())
    assert welcome.subject == "Welcome to Acme Support"


def test_all_variables(cast: Cast) -> None:
    response = make(
        cast.bob_membership, Scope.PERSONAL, "All",
        body="<p>{{ recipient_first_name }}|{{ recipient_last_name }}|{{ recipient_email }}|{{ sender_name }}|{{ organization_name }}|{{ today }}</p>",
    )  # fmt: skip
    rendered = actions.response_render(
        actor=cast.bob_membership, response=response,
        context=actions.RenderContext(recipient=("Customer, Dana", "dana@customer.example"), today=datetime.date(2026, 1, 2)),
    )  # fmt: skip
    assert rendered.text == "Dana|Customer|dana@customer.example|Bob Member|Acme Support|2026-01-02"


def test_r39_payloads_render_literally_and_no_secret_appears(cast: Cast) -> None:
    body = "".join(f"<p>{payload}</p>" for payload in R39_PAYLOADS)
    response = make(cast.bob_membership, Scope.PERSONAL, "Injection", subject="{{ settings.SECRET_KEY }} {% debug %} {{7*7}}", body=body)
    rendered = actions.response_render(
        actor=cast.bob_membership, response=response, context=actions.RenderContext(recipient=("A B", "a@b.test"))
    )
    assert rendered.subject == "{{ settings.SECRET_KEY }} {% debug %} {{7*7}}"
    for payload in R39_PAYLOADS[:5]:
        assert payload in rendered.text
    assert "49" not in rendered.text
    output = rendered.subject + rendered.html + rendered.text
    assert settings.SECRET_KEY not in output
    assert "root:" not in output
    assert "HTTP_" not in output
    assert "SECRET_KEY'" not in output


def test_rendering_rechecks_access(cast: Cast, responses: Responses) -> None:
    with pytest.raises(PermissionDenied):
        actions.response_render(actor=cast.bob_membership, response=responses.alice_personal, context=actions.RenderContext())
    with pytest.raises(PermissionDenied):
        actions.response_render(actor=cast.charlie_membership, response=responses.organization, context=actions.RenderContext())


def test_split_name() -> None:
    assert actions.split_name("Dana Maria Customer") == ("Dana", "Maria Customer")
    assert actions.split_name('"Customer, Dana"') == ("Dana", "Customer")
    assert actions.split_name("") == ("", "")
