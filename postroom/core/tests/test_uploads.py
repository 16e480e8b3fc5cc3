"""SECURITY.md R45: an uploaded attachment never lies on disk in plaintext, neither where Django's
upload handlers put large files (``FILE_UPLOAD_TEMP_DIR``) nor where its ASGI handler spools
large request bodies (the temporary directory); bodies too large to hold are refused (413).

A scan looks at both the files in a directory and the files this process has open there (on
Linux a ``TemporaryFile`` has no name at all, so only ``/proc/self/fd`` shows it). Each scan runs
while the upload is in flight (when the last piece has been handed over) and after it. Control
tests run the same scan with Django's defaults and must find the canary, so the scan itself is
shown to work.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django.urls import reverse

from postroom.asgi import build_application
from postroom.conftest import Cast
from postroom.core import uploads
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.outbox.models import Draft, OutgoingMessage
from postroom.testing.aio import run_in_fresh_loop

SIZE = 5 * 1024 * 1024
DJANGO_DEFAULT_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]


def attachment_with(canary: bytes) -> bytes:
    filler = secrets.token_bytes(SIZE // 2)
    return filler + canary + secrets.token_bytes(SIZE - len(filler) - len(canary))


def plaintext_found(directory: Path, canary: bytes) -> list[str]:
    """Files in ``directory`` (named, or open in this process, deleted or never named) holding ``canary``."""
    found = [str(path) for path in directory.rglob("*") if path.is_file() and canary in path.read_bytes()]
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            try:
                with open(f"/proc/self/fd/{descriptor}", "rb") as opened:
                    if canary in opened.read():
                        found.append(target)
            except OSError:
                continue
    return found


@pytest.fixture
def mailbox(cast: Cast, settings: Any) -> Mailbox:
    """Alice's mailbox; what she sends is only queued (kept by the dummy task backend)."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend", "QUEUES": ["default"]}}
    return make_mailbox(cast.alice_membership, address="alice@acme.test")


@pytest.fixture
def temporary(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every temporary file of the process, and Django's upload files, go under one directory."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


# --- the upload handler (the composer, through the test client) -----------------------------------
def compose_with_attachment(
    client: Any, mailbox: Mailbox, content: bytes, on_upload_complete: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Post the composer with ``content`` attached; ``on_upload_complete`` runs when the parser
    has the whole file (the moment Django's handler would hold it in a temporary file)."""
    from django.http import multipartparser

    original = multipartparser.MultiPartParser.handle_file_complete

    def completed(self: Any, old_field_name: str, counters: list[int]) -> Any:
        on_upload_complete()
        return original(self, old_field_name, counters)

    monkeypatch.setattr(multipartparser.MultiPartParser, "handle_file_complete", completed)
    return client.post(reverse("outbox:new", args=["acme"]), {
        "mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Scan", "text": "Attached.",
        "attachments": SimpleUploadedFile("scan.pdf", content, content_type="application/pdf"),
    })  # fmt: skip


@pytest.mark.django_db
def test_r45_a_5_mb_attachment_is_never_on_disk_in_plaintext(
    cast: Cast, mailbox: Mailbox, client_as: Any, temporary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = b"R45-CANARY-" + secrets.token_hex(16).encode()
    during: list[str] = []
    response = compose_with_attachment(
        client_as(cast.alice), mailbox, attachment_with(canary), lambda: during.extend(plaintext_found(temporary, canary)), monkeypatch
    )
    assert response.status_code == 302
    outgoing = OutgoingMessage.objects.get()
    assert (outgoing.envelope or {})["attachments"][0]["size"] == SIZE  # it was uploaded whole
    assert during == []
    assert plaintext_found(temporary, canary) == []


@pytest.mark.django_db
def test_control_django_default_handlers_leave_the_canary_in_the_temp_dir(
    cast: Cast, mailbox: Mailbox, client_as: Any, temporary: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FILE_UPLOAD_HANDLERS = DJANGO_DEFAULT_HANDLERS
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
    canary = b"R45-CANARY-" + secrets.token_hex(16).encode()
    during: list[str] = []
    compose_with_attachment(
        client_as(cast.alice), mailbox, attachment_with(canary), lambda: during.extend(plaintext_found(temporary, canary)), monkeypatch
    )
    assert during, "the scan did not see the file Django's handler wrote"


def two_files_of_600_kb() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(f"{number}.bin", b"x" * 600 * 1024) for number in range(2)]


@pytest.mark.django_db
def test_files_over_the_limit_are_refused_before_they_are_kept(cast: Cast, mailbox: Mailbox, client_as: Any, settings: Any) -> None:
    settings.POSTROOM_MAX_UPLOAD_BYTES = 1024 * 1024
    client = client_as(cast.alice)
    response = client.post(reverse("outbox:new", args=["acme"]), {
        "mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Big", "text": "x",
        "attachments": two_files_of_600_kb(),  # 1.2 MB together
    })  # fmt: skip
    assert response.status_code == 413
    assert "files may total at most 1 MB" in response.content.decode()  # said, not a bare "Bad request"
    assert not OutgoingMessage.objects.exists()


@pytest.mark.django_db
def test_an_htmx_send_over_the_limit_is_answered_with_the_reason_as_text(
    cast: Cast, mailbox: Mailbox, client_as: Any, settings: Any
) -> None:
    # The composer shows the text of a 413 in its toast (inbox.js), not an error page.
    settings.POSTROOM_MAX_UPLOAD_BYTES = 1024 * 1024
    response = client_as(cast.alice).post(reverse("outbox:new", args=["acme"]), {
        "mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Big", "text": "x", "attachments": two_files_of_600_kb(),
    }, headers={"HX-Request": "true"})  # fmt: skip
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "The upload is too large: files may total at most 1 MB."
    assert not OutgoingMessage.objects.exists()


@pytest.mark.django_db
def test_a_draft_autosave_over_the_limit_answers_the_composers_status_line(
    cast: Cast, mailbox: Mailbox, client_as: Any, settings: Any
) -> None:
    settings.POSTROOM_MAX_UPLOAD_BYTES = 1024 * 1024
    response = client_as(cast.alice).post(reverse("outbox:draft_save", args=["acme"]), {
        "kind": "new", "mailbox": str(mailbox.pk), "to": "dana@customer.example", "subject": "Big", "text": "x",
        "attachments": two_files_of_600_kb(),
    }, headers={"HX-Request": "true"})  # fmt: skip
    assert response.status_code == 413
    page = response.content.decode()
    assert 'id="draft-status"' in page
    assert "Not saved: The upload is too large: files may total at most 1 MB." in page
    assert not Draft.objects.exists()
    handler = uploads.MemoryOnlyUploadHandler()
    with pytest.raises(uploads.RequestDataTooBig, match="files may total at most 1 MB"):
        handler.handle_raw_input(None, {}, settings.POSTROOM_MAX_REQUEST_BYTES + 1, b"boundary")


# --- the ASGI body spool (what ``postroom run`` serves) ---------------------------------------------
def call_asgi(
    body: bytes, *, on_last_piece: Callable[[], None] = lambda: None, declared: bool = True, piece: int = 256 * 1024
) -> list[Any]:
    """POST ``body`` to the production ASGI application in pieces; the messages it sent back."""
    pieces = [body[start : start + piece] for start in range(0, len(body), piece)]
    headers = [(b"host", b"testserver"), (b"content-type", MULTIPART_CONTENT.encode())]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/accounts/login/", "raw_path": b"/accounts/login/", "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[Any] = []

    async def run() -> None:
        forever = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if pieces:
                chunk = pieces.pop(0)
                if not pieces:
                    on_last_piece()
                return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
            await forever.wait()  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        # A fresh application: the threads of the shared one may hold a database connection
        # of an earlier test, which this test (no database) must not touch.
        await build_application()(scope, receive, send)

    run_in_fresh_loop(run())
    return sent


def multipart_body(content: bytes) -> bytes:
    return encode_multipart(BOUNDARY, {"login": "x@example.test", "file": SimpleUploadedFile("scan.pdf", content)})


def status_of(sent: list[Any]) -> int:
    return int(next(message["status"] for message in sent if message["type"] == "http.response.start"))


def test_r45_the_asgi_body_spool_keeps_a_5_mb_upload_in_memory(temporary: Path) -> None:
    canary = b"R45-CANARY-" + secrets.token_hex(16).encode()
    during: list[str] = []
    sent = call_asgi(multipart_body(attachment_with(canary)), on_last_piece=lambda: during.extend(plaintext_found(temporary, canary)))
    assert status_of(sent) == 403  # no CSRF token: what matters is where the body went
    assert during == []
    assert plaintext_found(temporary, canary) == []


def test_control_the_asgi_spool_with_djangos_default_size_writes_to_disk(temporary: Path, settings: Any) -> None:
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
    canary = b"R45-CANARY-" + secrets.token_hex(16).encode()
    during: list[str] = []
    call_asgi(multipart_body(attachment_with(canary)), on_last_piece=lambda: during.extend(plaintext_found(temporary, canary)))
    assert during, "the scan did not see Django's spool file"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_body_over_the_request_limit_is_refused_413(temporary: Path, settings: Any, declared: bool) -> None:
    settings.POSTROOM_MAX_REQUEST_BYTES = 1024 * 1024
    canary = b"R45-CANARY-" + secrets.token_hex(16).encode()
    sent = call_asgi(multipart_body(attachment_with(canary)[: 3 * 1024 * 1024]), declared=declared)
    assert status_of(sent) == 413
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    assert b"files may total at most" in body
    assert plaintext_found(temporary, canary) == []
