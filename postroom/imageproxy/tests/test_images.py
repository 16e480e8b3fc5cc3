"""SECURITY.md R29, R30, R32 through the views: blocked by default, the proxy after consent,
per-sender "always show", tracking pixels, and cid: inline parts under capability URLs.

Image requests are made with an anonymous client on purpose: the sandboxed frame's requests
carry no cookies, so nothing here may depend on the session.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from postroom.audit.models import AuditEvent
from postroom.conftest import Cast
from postroom.conversations.models import Message, MessageCopy
from postroom.core.keys import keyring
from postroom.imageproxy import links, views
from postroom.imageproxy.models import TrustedImageSender
from postroom.imageproxy.tests.conftest import build_rich_raw, deliver
from postroom.mailboxes.models import Mailbox
from postroom.testing.web_peers import GIF_PIXEL, PNG_PIXEL, SVG_IMAGE, Answer, RemoteSite

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_image_cache() -> None:
    views.image_cache.clear()


def newsletter(site: RemoteSite) -> str:
    return (
        f'<p>Spring is here</p><img src="{site.image("/hero.png")}" width="600" height="300" alt="Spring sale">'
        f'<img src="{site.image("/open.gif", GIF_PIXEL, "image/gif")}" width="1" height="1">'
        f'<table background="{site.image("/bg.png")}"><tr><td>cell</td></tr></table>'
        '<img src="cid:logo@customer.example" alt="logo">'
    )


def detail_url(cast: Cast, message: Message, **query: str) -> str:
    url = reverse("conversations:detail", args=[cast.org_a.slug, message.conversation_id])
    return url + ("?" + "&".join(f"{name}={value}" for name, value in query.items()) if query else "")


def frame_of(page: str) -> str:
    found = re.search(r'<iframe class="message-frame"[^>]* src="([^"]+)"', page)
    assert found is not None, "no message frame on the page"
    return unescape(found.group(1))


def image_sources(frame_html: str) -> list[str]:
    return [unescape(value) for value in re.findall(r'(?:src|background)="([^"]*)"', frame_html)]


def csp_image_sources(response: Any) -> list[str]:
    directive = next(part for part in response["Content-Security-Policy"].split(";") if part.strip().startswith("img-src"))
    return directive.split()[1:]


@pytest.fixture
def message(fetchable_remote_site: RemoteSite, alice_mailbox: Mailbox) -> Message:
    return deliver(alice_mailbox, build_rich_raw(newsletter(fetchable_remote_site)))


# --- blocked by default ---------------------------------------------------------------------------
def test_r29_by_default_the_frame_names_no_remote_host_and_the_page_says_why(
    cast: Cast, client_as, message: Message, fetchable_remote_site: RemoteSite
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.alice)
    page = client.get(detail_url(cast, message)).content.decode()
    assert "Remote images are hidden" in page
    assert "1 tracking image removed" in page
    assert "Show images" in page
    frame = client.get(frame_of(page))
    body = frame.content.decode()
    assert f":{fetchable_remote_site.port}" not in body
    assert "/images/proxy/" not in body
    assert '<img alt="Spring sale" width="600" height="300">' in body  # a placeholder keeps the size
    assert csp_image_sources(frame) == ["data:", f"http://testserver/o/acme/conversations/messages/{message.pk}/inline/"]
    assert fetchable_remote_site.requests == []


def test_r29_show_images_rewrites_every_remote_image_to_the_proxy(
    cast: Cast, client_as, message: Message, fetchable_remote_site: RemoteSite
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.alice)
    page = client.get(detail_url(cast, message, show_images=str(message.pk))).content.decode()
    assert "Images are shown through Postroom" in page
    assert "1 tracking image removed" in page
    frame = client.get(frame_of(page))
    assert frame_of(page).endswith("?images=show")
    sources = image_sources(frame.content.decode())
    proxied = [source for source in sources if "/images/proxy/" in source]
    assert len(proxied) == 2  # the hero image and the table background; the 1x1 pixel is gone
    assert all(source.startswith("/o/acme/images/proxy/") for source in proxied)
    assert f":{fetchable_remote_site.port}" not in frame.content.decode()
    assert "http://testserver/o/acme/images/proxy/" in csp_image_sources(frame)
    assert fetchable_remote_site.requests == []  # nothing is fetched before the browser asks

    anonymous = Client()  # the frame sends no cookies
    answer = anonymous.get(proxied[0])
    assert answer.status_code == 200
    assert answer.content == PNG_PIXEL
    assert answer["Content-Type"] == "image/png"
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["Content-Security-Policy"].split("; ")[:2] == ["default-src 'none'", "sandbox"]
    assert answer["Content-Disposition"] == 'inline; filename="image"'
    assert answer["Cross-Origin-Resource-Policy"] == "same-site"
    assert answer["Cache-Control"] == "no-store"
    received = fetchable_remote_site.requests[-1]
    assert received.path == "/hero.png"
    assert not {"cookie", "referer", "authorization"} & set(received.headers)


def test_r29_the_tracking_pixel_is_never_fetched_even_after_consent(
    cast: Cast, client_as, message: Message, fetchable_remote_site: RemoteSite
) -> None:  # type: ignore[no-untyped-def]
    client = client_as(cast.alice)
    page = client.get(detail_url(cast, message, show_images=str(message.pk))).content.decode()
    for source in image_sources(client.get(frame_of(page)).content.decode()):
        if "/images/proxy/" in source:
            assert Client().get(source).status_code == 200
    assert "/open.gif" not in fetchable_remote_site.paths_requested()
    assert sorted(fetchable_remote_site.paths_requested()) == ["/bg.png", "/hero.png"]


def test_r29_reopening_a_message_does_not_fetch_again(cast: Cast, client_as, message: Message, fetchable_remote_site: RemoteSite) -> None:  # type: ignore[no-untyped-def]
    url = links.proxy_url(actor=cast.alice_membership, url=fetchable_remote_site.url("/hero.png"))
    assert Client().get(url).status_code == 200
    assert Client().get(url).content == PNG_PIXEL
    assert fetchable_remote_site.paths_requested() == ["/hero.png"]


# --- the proxy refuses -------------------------------------------------------------------------------
def test_r30_the_proxy_fetches_only_urls_it_signed_for_an_active_member(cast: Cast, fetchable_remote_site: RemoteSite) -> None:
    url = links.proxy_url(actor=cast.alice_membership, url=fetchable_remote_site.image("/a.png"))
    token = url.rstrip("/").rsplit("/", 1)[1]
    tampered = links.proxy_url(actor=cast.alice_membership, url=fetchable_remote_site.url("/b.png")).rstrip("/").rsplit("/", 1)[1]
    forged = token.split(":")[0] + ":" + tampered.split(":")[-1]
    for refused in (
        url.replace(token, forged),  # another URL's signature
        url.replace("/o/acme/", "/o/beta/"),  # another organization's slug
        url.replace(token, "not-a-token"),
        links.proxy_url(actor=cast.alice_membership, url=fetchable_remote_site.url("/a.png"), now=0),  # expired long ago
    ):
        assert Client().get(refused).status_code == 404, refused
    cast.alice.is_active = False
    cast.alice.save(update_fields=["is_active"])
    assert Client().get(url).status_code == 404
    cast.alice.is_active = True
    cast.alice.save(update_fields=["is_active"])
    assert Client().get(url).status_code == 200
    cast.alice_membership.delete()
    assert Client().get(url).status_code == 404
    assert fetchable_remote_site.paths_requested() == ["/a.png"]


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Answer(body=SVG_IMAGE, headers={"Content-Type": "image/svg+xml"}), 415),
        (Answer(body=b"<script>window.__xss=1</script>", headers={"Content-Type": "image/png"}), 415),
        (Answer(body=PNG_PIXEL, headers={"Content-Type": "text/html"}), 415),
        (Answer(status=500, body=b"oops"), 502),
    ],
)
def test_r30_the_proxy_serves_only_raster_images(cast: Cast, fetchable_remote_site: RemoteSite, answer: Answer, status: int) -> None:
    url = links.proxy_url(actor=cast.alice_membership, url=fetchable_remote_site.answer("/x", answer))
    response = Client().get(url)
    assert response.status_code == status
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"script" not in response.content


def test_r30_the_proxy_refuses_loopback_without_the_test_allowlist(cast: Cast, remote_site: RemoteSite) -> None:
    for host in ("127.0.0.1", "127.1", "[::ffff:7f00:1]", "localhost"):
        url = links.proxy_url(actor=cast.alice_membership, url=remote_site.image("/a.png").replace("127.0.0.1", host))
        response = Client().get(url)
        assert response.status_code == 502, host
    assert remote_site.requests == []


def test_r30_the_proxy_refuses_when_too_many_fetches_run(cast: Cast, fetchable_remote_site: RemoteSite) -> None:
    url = links.proxy_url(actor=cast.alice_membership, url=fetchable_remote_site.image("/a.png"))
    taken = 0
    while views._fetch_slots.acquire(blocking=False):
        taken += 1
    try:
        response = Client().get(url)
        assert response.status_code == 503
        assert response["Retry-After"]
    finally:
        for _ in range(taken):
            views._fetch_slots.release()
    assert Client().get(url).status_code == 200


# --- always show images from a sender ------------------------------------------------------------------
def test_r29_always_show_images_from_a_sender_is_per_member_and_kept_as_a_blind_index(
    cast: Cast, client_as, message: Message, bob_mailbox: Mailbox, fetchable_remote_site: RemoteSite
) -> None:  # type: ignore[no-untyped-def]
    alice = client_as(cast.alice)
    choice_url = reverse("imageproxy:sender_choice", args=[cast.org_a.slug, message.pk])
    response = alice.post(choice_url, {"choice": "always"})
    assert response.status_code == 302
    assert response["Location"].endswith(f"#message-{message.pk}")
    row = TrustedImageSender.objects.get()
    assert row.membership == cast.alice_membership
    assert row.sender_index == keyring().blind_index(message.key_scope(), "image-sender", "dana@customer.example")
    assert "dana" not in row.sender_index
    event = AuditEvent.objects.get(action="images.sender_trusted")
    assert "dana" not in str(event.details) + event.target_label

    page = alice.get(detail_url(cast, message)).content.decode()
    assert "Images from this sender are always shown" in page
    frame = alice.get(frame_of(page)).content.decode()
    assert any("/images/proxy/" in source for source in image_sources(frame))

    # Another message from the same sender, in Bob's mailbox: Bob still has to ask.
    bobs = deliver(bob_mailbox, build_rich_raw(newsletter(fetchable_remote_site), message_id="<other@customer.example>"))
    bob_page = client_as(cast.bob).get(detail_url(cast, bobs)).content.decode()
    assert "Remote images are hidden" in bob_page

    assert alice.post(choice_url, {"choice": "ask"}).status_code == 302
    assert not TrustedImageSender.objects.exists()
    assert "Remote images are hidden" in alice.get(detail_url(cast, message)).content.decode()
    assert AuditEvent.objects.filter(action="images.sender_untrusted").count() == 1


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_r21_only_someone_who_sees_the_message_can_choose_for_its_sender(cast: Cast, client_as, message: Message, who: str) -> None:  # type: ignore[no-untyped-def]
    slug = cast.org_a.slug if who == "bob" else cast.org_b.slug
    response = client_as(getattr(cast, who)).post(reverse("imageproxy:sender_choice", args=[slug, message.pk]), {"choice": "always"})
    assert response.status_code == 404
    assert not TrustedImageSender.objects.exists()


def test_the_sender_choice_needs_a_post_and_a_known_choice(cast: Cast, client_as, message: Message) -> None:  # type: ignore[no-untyped-def]
    url = reverse("imageproxy:sender_choice", args=[cast.org_a.slug, message.pk])
    client = client_as(cast.alice)
    assert client.get(url).status_code == 405
    assert client.post(url, {"choice": "sometimes"}).status_code == 400
    assert not TrustedImageSender.objects.exists()


def test_the_page_reads_trusted_senders_once_however_many_messages(
    cast: Cast, client_as, alice_mailbox: Mailbox, fetchable_remote_site: RemoteSite
) -> None:  # type: ignore[no-untyped-def]
    first = deliver(alice_mailbox, build_rich_raw(newsletter(fetchable_remote_site)))
    client = client_as(cast.alice)
    client.post(reverse("imageproxy:sender_choice", args=[cast.org_a.slug, first.pk]), {"choice": "always"})
    for uid in range(2, 5):
        deliver(alice_mailbox, build_rich_raw(newsletter(fetchable_remote_site), message_id=f"<n{uid}@customer.example>"), uid=uid)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(detail_url(cast, first)).content.decode()
    assert page.count("Images from this sender are always shown") >= 1
    assert sum("imageproxy_trustedimagesender" in query["sql"] for query in queries.captured_queries) == 1


# --- cid: inline parts ---------------------------------------------------------------------------------
def test_r29_cid_images_come_from_this_message_under_a_capability_url(cast: Cast, client_as, message: Message) -> None:  # type: ignore[no-untyped-def]
    frame = client_as(cast.alice).get(reverse("conversations:html_frame", args=[cast.org_a.slug, message.pk]))
    inline = [source for source in image_sources(frame.content.decode()) if "/inline/" in source]
    assert len(inline) == 1
    assert inline[0].startswith(f"/o/acme/conversations/messages/{message.pk}/inline/")
    answer = Client().get(inline[0])
    assert answer.status_code == 200
    assert answer.content == PNG_PIXEL
    assert answer["Content-Type"] == "image/png"
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer["Content-Security-Policy"]


def test_r21_an_inline_image_is_404_for_anyone_who_cannot_see_the_message(cast: Cast, client_as, message: Message) -> None:  # type: ignore[no-untyped-def]
    frame = client_as(cast.alice).get(reverse("conversations:html_frame", args=[cast.org_a.slug, message.pk])).content.decode()
    alices = next(source for source in image_sources(frame) if "/inline/" in source)
    index = message.attachments.get(is_inline=True).content_id
    bobs = links.inline_url(actor=cast.bob_membership, message=message, content_index=index)
    assert Client().get(bobs).status_code == 404  # a member who cannot see it, with a valid grant
    charlies = links.inline_url(actor=cast.charlie_membership, message=message, content_index=index)
    assert Client().get(charlies).status_code == 404
    expired = links.inline_url(actor=cast.alice_membership, message=message, content_index=index, now=0)
    assert Client().get(expired).status_code == 404
    other_message = alices.replace(str(message.pk), "00000000-0000-7000-8000-000000000001")
    assert Client().get(other_message).status_code == 404
    assert Client().get(alices).status_code == 200
    MessageCopy.objects.filter(message=message).update(gone_at="2026-03-02T10:00:00Z")  # no longer in her mailbox
    assert Client().get(alices).status_code == 404


def test_r32_an_inline_part_that_is_not_a_raster_image_is_not_served(cast: Cast, client_as, alice_mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    raw = build_rich_raw(
        '<img src="cid:page@x"><img src="cid:vector@x"><img src="cid:missing@x">',
        inline=(("page@x", "application/octet-stream", b"<script>window.__xss=1</script>"), ("vector@x", "image/svg+xml", SVG_IMAGE)),
    )
    message = deliver(alice_mailbox, raw)
    frame = client_as(cast.alice).get(reverse("conversations:html_frame", args=[cast.org_a.slug, message.pk])).content.decode()
    inline = [source for source in image_sources(frame) if "/inline/" in source]
    assert len(inline) == 2  # the missing part has no URL at all
    for url in inline:
        assert Client().get(url).status_code == 404
