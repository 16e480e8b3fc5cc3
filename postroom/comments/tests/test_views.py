"""Comment pages, partials and attachment downloads for the cast (SECURITY.md R21, R28, R32, R52)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from postroom.audit.models import AuditEvent
from postroom.comments import actions
from postroom.comments.models import Comment, CommentAttachment
from postroom.comments.tests.conftest import Scene, mention

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def urls(scene: Scene, comment: Comment, attachment: CommentAttachment | None = None) -> dict[str, str]:
    slug = scene.cast.org_a.slug
    found = {
        "thread": reverse("comments:thread", args=[slug, comment.conversation_id]),
        "edit": reverse("comments:edit", args=[slug, comment.pk]),
        "delete": reverse("comments:delete", args=[slug, comment.pk]),
    }
    if attachment is not None:
        found["attachment"] = reverse("comments:attachment", args=[slug, attachment.pk])
    return found


def test_the_conversation_page_shows_the_thread_and_the_composer(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    comment_as(scene.cast.bob_membership, scene.shared, f"**On it** {mention(scene.cast.alice_membership)}")
    page = client_as(scene.cast.alice).get(reverse("conversations:detail", args=["acme", scene.shared.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert '<textarea id="comment-body" name="body"' in html
    assert "<strong>On it</strong>" in html
    assert '<span class="mention">@Alice Owner</span>' in html
    assert "postroom/comments.js" in html
    assert 'nonce="' in html


def test_posting_a_comment_redirects_to_it_or_returns_the_thread_to_htmx(scene: Scene, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(scene.cast.bob)
    url = reverse("comments:thread", args=["acme", scene.shared.pk])
    response = client.post(url, {"body": "plain post"})
    comment = Comment.objects.get()
    assert response.status_code == 302
    assert response["Location"].endswith(f"/o/acme/conversations/{scene.shared.pk}/#comment-{comment.pk}")
    partial = client.post(url, {"body": "via htmx"}, headers=HTMX)
    assert partial.status_code == 200
    assert 'id="comments"' in partial.content.decode()
    assert "via htmx" in partial.content.decode()
    assert "<html" not in partial.content.decode()
    assert client.get(url).status_code == 200  # the partial, for live updates


def test_an_invalid_comment_is_shown_again_with_its_error(scene: Scene, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(scene.cast.bob)
    url = reverse("comments:thread", args=["acme", scene.shared.pk])
    long_text = "keep me " * 3000
    response = client.post(url, {"body": long_text})
    assert response.status_code == 422
    assert "at most 20,000 characters" in response.content.decode()
    assert long_text.strip() in response.content.decode()  # nothing typed is lost
    partial = client.post(url, {"body": "  "}, headers=HTMX)
    assert partial.status_code == 200
    assert "Write something" in partial.content.decode()
    assert not Comment.objects.exists()


def test_r28_comment_text_and_names_are_escaped_in_the_page(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    scene.cast.bob.name = "<script>alert('name')</script>"
    scene.cast.bob.save(update_fields=["name"])
    comment_as(scene.cast.bob_membership, scene.shared, "<img src=x onerror=alert(1)> [x](javascript:alert(2))")
    html = client_as(scene.cast.alice).get(reverse("comments:thread", args=["acme", scene.shared.pk])).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "javascript:" not in html.replace("[x](javascript:alert(2))", "")


@pytest.mark.parametrize("who", ["bob_on_private", "charlie"])
def test_r21_no_access_is_404_on_every_comment_url(scene: Scene, client_as, comment_as: Callable[..., Comment], who: str) -> None:  # type: ignore[no-untyped-def]
    """Bob cannot see Alice's private conversation; Charlie is in another organization."""
    comment = comment_as(
        scene.cast.alice_membership, scene.private, "private note",
        attachments=[actions.Upload(filename="a.txt", content_type="text/plain", content=b"secret attachment")],
    )  # fmt: skip
    attachment = CommentAttachment.objects.get()
    client = client_as(scene.cast.bob if who == "bob_on_private" else scene.cast.charlie)
    for name, url in urls(scene, comment, attachment).items():
        assert client.get(url).status_code in ({404} if name in ("thread", "attachment") else {405}), name
        if name != "attachment":
            assert client.post(url, {"body": "hijack"}).status_code == 404, name
        if who == "charlie":  # his own organization's slug with A's ids: the same 404
            assert client.get(url.replace("/o/acme/", "/o/beta/")).status_code in {404, 405}, name
    comment.refresh_from_db()
    assert comment.body == "private note"
    assert comment.deleted_at is None
    assert Comment.objects.count() == 1
    assert not AuditEvent.objects.filter(action="comment.attachment_downloaded").exists()


def test_editing_or_deleting_someone_elses_comment_is_403(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    comment = comment_as(scene.cast.alice_membership, scene.shared, "Alice's words")
    client = client_as(scene.cast.bob)
    assert client.post(urls(scene, comment)["edit"], {"body": "Bob's words"}).status_code == 403
    assert client.post(urls(scene, comment)["delete"]).status_code == 403
    comment.refresh_from_db()
    assert comment.body == "Alice's words"
    assert comment.deleted_at is None


def test_the_author_edits_and_deletes_through_htmx(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    comment = comment_as(scene.cast.alice_membership, scene.shared, "typo")
    client = client_as(scene.cast.alice)
    edited = client.post(urls(scene, comment)["edit"], {"body": "fixed"}, headers=HTMX)
    assert edited.status_code == 200
    assert "fixed" in edited.content.decode()
    assert "(edited)" in edited.content.decode()
    deleted = client.post(urls(scene, comment)["delete"], headers=HTMX)
    assert deleted.status_code == 200
    assert "Comment deleted" in deleted.content.decode()
    assert "fixed" not in deleted.content.decode()


@pytest.mark.parametrize(
    ("name", "declared", "served"),
    [("report.pdf", "application/pdf", "application/pdf"), ("x.html", "text/html", "application/octet-stream"),
     ("logo.svg", "image/svg+xml", "application/octet-stream")],
)  # fmt: skip
def test_r32_attachments_upload_and_download_as_files(scene: Scene, client_as, name: str, declared: str, served: str) -> None:  # type: ignore[no-untyped-def]
    client = client_as(scene.cast.alice)
    content = b"<script>alert(1)</script>" if "html" in declared or "svg" in declared else b"%PDF-1.4 q3"
    client.post(reverse("comments:thread", args=["acme", scene.shared.pk]), {
        "body": "see attached", "attachments": SimpleUploadedFile(name, content, content_type=declared),
    })  # fmt: skip
    attachment = CommentAttachment.objects.get()
    assert content not in bytes(attachment.filename_sealed or b"")
    response = client_as(scene.cast.bob).get(reverse("comments:attachment", args=["acme", attachment.pk]))
    assert response.status_code == 200
    assert response.content == content
    assert response["Content-Type"].split(";")[0] == served
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    event = AuditEvent.objects.get(action="comment.attachment_downloaded")
    assert name not in str(event.details)
    assert event.target_id == str(attachment.pk)


def test_a_deleted_comments_attachment_is_gone(
    scene: Scene, client_as, comment_as: Callable[..., Comment], django_capture_on_commit_callbacks: Any
) -> None:  # type: ignore[no-untyped-def]
    comment = comment_as(
        scene.cast.alice_membership, scene.shared, "file",
        attachments=[actions.Upload(filename="a.txt", content_type="text/plain", content=b"data")],
    )  # fmt: skip
    attachment_url = reverse("comments:attachment", args=["acme", CommentAttachment.objects.get().pk])
    with django_capture_on_commit_callbacks(execute=True):
        actions.comment_delete(actor=scene.cast.alice_membership, comment=comment)
    assert client_as(scene.cast.alice).get(attachment_url).status_code == 404


def test_a_page_can_interleave_comments_with_messages_and_events(scene: Scene, rf, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    """``conversation_feed`` + ``{% comment_entry %}``: what a conversation page needs to show the
    thread in time order; the tag shows nothing to someone who cannot see the conversation."""
    from django.template import Context, Template

    from postroom.comments.selectors import conversation_feed

    comment = comment_as(scene.cast.bob_membership, scene.shared, "**between**")
    feed = conversation_feed(actor=scene.cast.alice_membership, conversation=scene.shared)
    assert [entry.kind for entry in feed] == ["message", "event", "comment"]  # received, shared, commented
    assert feed[-1].item == comment
    template = Template(
        "{% load comments %}{% for entry in feed %}{% if entry.kind == 'comment' %}{% comment_entry entry.item %}{% endif %}{% endfor %}"
    )
    request = rf.get("/")
    request.user = scene.cast.alice
    assert "<strong>between</strong>" in template.render(Context({"feed": feed, "request": request}))
    request.user = scene.cast.charlie
    assert "between" not in template.render(Context({"feed": feed, "request": request}))


def test_the_thread_costs_the_same_queries_with_two_comments_or_twenty(scene: Scene, client_as, comment_as: Callable[..., Comment]) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_as(scene.cast.alice)
    url = reverse("comments:thread", args=["acme", scene.shared.pk])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    attachment = [actions.Upload(filename="a.txt", content_type="text/plain", content=b"a")]
    for number in range(2):
        comment_as(scene.cast.bob_membership, scene.shared, f"{mention(scene.cast.alice_membership)} {number}", attachments=attachment)
    few = queries()
    for number in range(18):
        comment_as(scene.cast.carol_membership, scene.shared, f"{mention(scene.cast.bob_membership)} {number}", attachments=attachment)
    assert queries() == few
