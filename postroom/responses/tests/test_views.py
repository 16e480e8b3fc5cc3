"""The response pages: list and filter, create with attachments, edit, remove a file, delete."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from postroom.conftest import Cast
from postroom.responses import actions
from postroom.responses.models import Response, ResponseAttachment, Scope
from postroom.responses.tests.conftest import Responses

pytestmark = pytest.mark.django_db


def test_list_filters_by_scope(cast: Cast, responses: Responses, client_as: Any) -> None:
    client = client_as(cast.bob)
    everything = client.get(reverse("responses:list", args=["acme"])).content.decode()
    assert "Welcome" in everything
    assert "Refund" in everything
    assert "Bob&#x27;s own" in everything
    teams = client.get(reverse("responses:list", args=["acme"]), {"scope": "team"}).content.decode()
    assert "Refund" in teams
    assert "Welcome" not in teams


def test_create_with_attachments_then_edit_and_remove_a_file(cast: Cast, client_as: Any) -> None:
    client = client_as(cast.bob)
    assert client.get(reverse("responses:new", args=["acme"])).status_code == 200
    created = client.post(reverse("responses:new", args=["acme"]), {
        "name": "Invoice", "scope": "personal", "subject": "Your invoice", "body": "<p>Attached.</p><script>x</script>",
        "attachments": [SimpleUploadedFile("../invoice.pdf", b"%PDF", content_type="application/pdf")],
    })  # fmt: skip
    assert created.status_code == 302
    response = Response.objects.get()
    assert (response.scope, response.owner_id, response.body) == (Scope.PERSONAL, cast.bob_membership.pk, "<p>Attached.</p>")
    [attachment] = response.attachments.all()
    assert attachment.filename == "invoice.pdf"
    edit_url = reverse("responses:edit", args=["acme", response.pk])
    page = client.get(edit_url).content.decode()
    assert "invoice.pdf" in page
    assert "data-rich-editor" in page
    removed = client.post(reverse("responses:attachment_remove", args=["acme", response.pk]), {"attachment": str(attachment.pk)})
    assert removed.status_code == 302
    assert not ResponseAttachment.objects.exists()
    assert client.post(edit_url, {"name": "Invoice 2", "scope": "personal", "body": "<p>x</p>"}).status_code == 302
    assert Response.objects.get().name == "Invoice 2"


def test_a_member_is_not_offered_the_organization_scope(cast: Cast, client_as: Any) -> None:
    page = client_as(cast.bob).get(reverse("responses:new", args=["acme"])).content.decode()
    assert 'value="organization"' not in page
    assert 'value="organization"' in client_as(cast.carol).get(reverse("responses:new", args=["acme"])).content.decode()
    assert client_as(cast.bob).post(reverse("responses:new", args=["acme"]), {"name": "X", "scope": "organization"}).status_code == 403
    assert not Response.objects.exists()


def test_attachment_limits(cast: Cast) -> None:
    response = actions.response_create(actor=cast.bob_membership, scope=Scope.PERSONAL, content=actions.ResponseContent(name="Big"))
    too_big = actions.NewAttachment(
        filename="big.bin", content_type="application/octet-stream", content=b"x" * (actions.MAX_ATTACHMENT_BYTES + 1)
    )
    with pytest.raises(actions.ValidationError) as error:
        actions.response_attachments_add(actor=cast.bob_membership, response=response, files=[too_big])
    assert "attachments" in error.value.message_dict
    many = [actions.NewAttachment(filename=f"{n}.txt", content_type="text/plain", content=b"x") for n in range(actions.MAX_ATTACHMENTS + 1)]
    with pytest.raises(actions.ValidationError):
        actions.response_attachments_add(actor=cast.bob_membership, response=response, files=many)
    assert not ResponseAttachment.objects.exists()


def test_the_name_subject_body_and_file_names_are_sealed(cast: Cast) -> None:
    response = actions.response_create(
        actor=cast.bob_membership, scope=Scope.PERSONAL,
        content=actions.ResponseContent(name="CANARYNAME", subject="CANARYSUBJECT", body="<p>CANARYBODY</p>"),
    )  # fmt: skip
    actions.response_attachments_add(
        actor=cast.bob_membership, response=response, files=[actions.NewAttachment("CANARYFILE.txt", "text/plain", b"CANARYCONTENT")]
    )
    row = Response.objects.filter(pk=response.pk).values_list("name_sealed", "subject_sealed", "body_sealed").get()
    file_row = ResponseAttachment.objects.values_list("filename_sealed", flat=True).get()
    for value in (*row, file_row):
        assert b"CANARY" not in bytes(value)
