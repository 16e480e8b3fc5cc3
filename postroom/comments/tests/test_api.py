"""The comments API, every answer checked against the OpenAPI document (postroom.api.tests.helpers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from hypothesis import given

from postroom.api.tests.helpers import API, ApiClient, checker
from postroom.comments.models import Comment, CommentAttachment
from postroom.comments.tests.conftest import Scene, mention, team_mention
from postroom.notifications.models import Notification
from postroom.orgs.tests.test_field_allowlists import extras, hypothesis_settings

pytestmark = pytest.mark.django_db


def test_list_create_edit_delete_through_the_api(scene: Scene) -> None:
    alice = ApiClient(scene.cast.alice)
    base = f"/orgs/acme/conversations/{scene.shared.pk}/comments"
    created = alice.post(base, {"body": f"**Hi** {mention(scene.cast.bob_membership)}", "author_id": scene.cast.bob_membership.pk})
    assert created.status_code == 201
    body = created.json()
    assert body["author_id"] == scene.cast.alice_membership.pk  # extra fields are ignored, never written
    assert body["html"].startswith('<p><strong>Hi</strong> <span class="mention">@Bob Member</span>')
    assert body["mentions"] == [{"kind": "member", "id": scene.cast.bob_membership.pk, "name": "Bob Member"}]
    listed = alice.get(base)
    assert [item["id"] for item in listed.json()] == [body["id"]]
    edited = alice.patch(f"/orgs/acme/comments/{body['id']}", {"body": "changed"})
    assert edited.status_code == 200
    assert edited.json()["edited_at"]
    assert edited.json()["mentions"] == []
    assert alice.get(f"/orgs/acme/comments/{body['id']}").json()["body"] == "changed"
    assert alice.delete(f"/orgs/acme/comments/{body['id']}").status_code == 204
    gone = alice.get(f"/orgs/acme/comments/{body['id']}").json()
    assert gone["body"] is None
    assert gone["html"] is None
    assert gone["deleted_at"]


def test_invalid_bodies_are_422_with_the_field(scene: Scene) -> None:
    response = ApiClient(scene.cast.alice).post(f"/orgs/acme/conversations/{scene.shared.pk}/comments", {"body": ""})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"
    blank = ApiClient(scene.cast.alice).post(f"/orgs/acme/conversations/{scene.shared.pk}/comments", {"body": "   "})
    assert blank.status_code == 422
    assert "Write something" in blank.json()["detail"]


def test_someone_elses_comment_is_403_an_invisible_one_404(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    comment = comment_as(scene.cast.alice_membership, scene.shared, "mine")
    private = comment_as(scene.cast.alice_membership, scene.private, "private")
    bob = ApiClient(scene.cast.bob)
    assert bob.patch(f"/orgs/acme/comments/{comment.pk}", {"body": "x"}).status_code == 403
    assert bob.delete(f"/orgs/acme/comments/{comment.pk}").status_code == 403
    for method, path, payload in [
        ("GET", f"/orgs/acme/comments/{private.pk}", None),
        ("PATCH", f"/orgs/acme/comments/{private.pk}", {"body": "x"}),
        ("DELETE", f"/orgs/acme/comments/{private.pk}", None),
        ("GET", f"/orgs/acme/conversations/{scene.private.pk}/comments", None),
        ("POST", f"/orgs/acme/conversations/{scene.private.pk}/comments", {"body": "x"}),
        ("GET", "/orgs/acme/comments/not-a-uuid", None),
    ]:
        assert bob.request(method, path, payload).status_code == 404, (method, path)
    charlie = ApiClient(scene.cast.charlie)
    assert charlie.get(f"/orgs/acme/conversations/{scene.shared.pk}/comments").status_code == 404
    assert charlie.get(f"/orgs/beta/conversations/{scene.shared.pk}/comments").status_code == 404
    assert charlie.get(f"/orgs/beta/comments/{comment.pk}").status_code == 404
    assert Comment.objects.get(pk=comment.pk).body == "mine"


def test_mentionables_list_the_organization_only(scene: Scene) -> None:
    everyone = ApiClient(scene.cast.bob).get("/orgs/acme/mentionables").json()
    names = {(item["kind"], item["name"]) for item in everyone}
    assert names == {("member", "Alice Owner"), ("member", "Bob Member"), ("member", "Carol Admin"), ("team", "Support"), ("team", "Sales")}
    assert ApiClient(scene.cast.bob).get("/orgs/acme/mentionables", q="ch").json() == []  # Charlie is elsewhere
    [carol] = ApiClient(scene.cast.bob).get("/orgs/acme/mentionables", q="adm").json()  # a word of the name
    assert carol["mention"] == f"@[Carol Admin](member:{scene.cast.carol_membership.pk})"
    [support] = ApiClient(scene.cast.bob).get("/orgs/acme/mentionables", q="sup").json()
    assert support["mention"] == team_mention(scene.support)
    assert ApiClient(scene.cast.charlie).get("/orgs/acme/mentionables").status_code == 404
    assert ApiClient().get("/orgs/acme/mentionables").status_code == 401


def test_attachments_through_the_api(scene: Scene, comment_as: Callable[..., Comment]) -> None:
    comment = comment_as(scene.cast.alice_membership, scene.shared, "with a file")
    alice = ApiClient(scene.cast.alice)
    url = f"{API}/orgs/acme/comments/{comment.pk}/attachments"
    upload = SimpleUploadedFile("q3.pdf", b"%PDF q3", content_type="application/pdf")
    response = alice.client.post(url, {"files": [upload]}, headers=alice.headers)
    checker().check("POST", url, response)
    assert response.status_code == 201
    [attachment] = response.json()["attachments"]
    assert attachment["filename"] == "q3.pdf"
    assert attachment["size"] == 7
    assert alice.client.get(attachment["download_url"]).content == b"%PDF q3"
    bob = ApiClient(scene.cast.bob)
    refused = bob.client.post(url, {"files": [SimpleUploadedFile("x.txt", b"x")]}, headers=bob.headers)
    checker().check("POST", url, refused)
    assert refused.status_code == 403
    assert CommentAttachment.objects.count() == 1


def test_creating_through_the_api_notifies_like_the_page(scene: Scene) -> None:
    ApiClient(scene.cast.alice).post(
        f"/orgs/acme/conversations/{scene.private.pk}/comments", {"body": f"{mention(scene.cast.bob_membership)} ?"}
    )
    assert Notification.objects.filter(recipient=scene.cast.bob_membership, kind="mention").count() == 1


@pytest.mark.django_db
@hypothesis_settings
@given(extra=extras)
def test_r23_comment_writes_take_only_the_body(scene: Scene, extra: dict[str, Any]) -> None:
    with transaction.atomic():
        alice = ApiClient(scene.cast.alice)
        created = alice.post(f"/orgs/acme/conversations/{scene.shared.pk}/comments", {**extra, "body": "mine"})
        assert created.status_code == 201
        comment = Comment.objects.get()
        assert (comment.organization_id, comment.conversation_id, comment.author_id) == (
            scene.cast.org_a.pk,
            scene.shared.pk,
            scene.cast.alice_membership.pk,
        )
        assert (comment.edited_at, comment.deleted_at) == (None, None)
        edited = alice.patch(f"/orgs/acme/comments/{comment.pk}", {**extra, "body": "edited"})
        assert edited.status_code == 200
        comment.refresh_from_db()
        assert (comment.body, comment.author_id, comment.deleted_at) == ("edited", scene.cast.alice_membership.pk, None)
        transaction.set_rollback(True)
