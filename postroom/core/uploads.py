"""Uploads never reach the disk in plaintext (SECURITY.md R45).

Attacker and exposure: whoever can read the server's temporary directory (a backup of it, a
co-tenant process, a forensic copy of the disk after the machine is gone) would find the
attachments members upload, although everything Postroom stores is sealed. Django writes them
there in two places: its default upload handlers spill any file over
``FILE_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB) to a named temporary file, and the ASGI handler
spools every request body over that same size to a temporary file before the view runs.

Defences, and why this way:
- ``MemoryOnlyUploadHandler`` keeps every uploaded file in memory and refuses a request whose
  files together exceed ``POSTROOM_MAX_UPLOAD_BYTES`` (the largest total any upload form or API
  takes: 25 MB of attachments), with a clear error, before reading past the limit.
- ``FILE_UPLOAD_MAX_MEMORY_SIZE`` is raised to ``POSTROOM_MAX_REQUEST_BYTES`` (the files, the
  form fields Django takes in memory anyway, and the multipart framing), so the ASGI spool never
  rolls over to disk, and ``RequestSizeLimit`` (the outermost ASGI application) answers 413 to
  any larger body, declared or streamed, before Django spools it.
- The alternative, a temporary file sealed with an ephemeral key held in memory, keeps memory
  flat for huge uploads but is more code on the data path (a file object that encrypts on
  write and decrypts on read, for every consumer of ``UploadedFile``) and still needs the ASGI
  spool fixed. Postroom's uploads are small (25 MB at most) and are read whole into memory
  right after (to seal them into a blob), so holding them in memory costs nothing extra; memory
  per request is bounded by the same limit.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def too_large_message() -> str:
    return f"The upload is too large: files may total at most {_megabytes(settings.POSTROOM_MAX_UPLOAD_BYTES)}."


class MemoryOnlyUploadHandler(FileUploadHandler):
    """Every file of a request in memory, all of them together at most ``POSTROOM_MAX_UPLOAD_BYTES``.

    Django makes one instance per request, so the running total is the request's."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.total = 0
        self.buffer = io.BytesIO()

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: str | None = None) -> None:  # noqa: N803 (Django's name)
        # Refused before a byte is read when the declared length alone is over the limit.
        if content_length > settings.POSTROOM_MAX_REQUEST_BYTES:
            raise RequestDataTooBig(too_large_message())

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.total += len(raw_data)
        if self.total > settings.POSTROOM_MAX_UPLOAD_BYTES:
            raise RequestDataTooBig(too_large_message())
        self.buffer.write(raw_data)

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer, field_name=self.field_name, name=self.file_name, content_type=self.content_type,
            size=file_size, charset=self.charset, content_type_extra=self.content_type_extra,
        )  # fmt: skip


class RequestSizeLimit:
    """ASGI wrapper: a request body over ``POSTROOM_MAX_REQUEST_BYTES`` is answered 413 and never
    handed to Django (whose body spool would write it to a temporary file)."""

    def __init__(self, application: Any) -> None:  # Django's ASGIHandler (its annotations are narrower than ASGI's)
        self.application = application

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        limit = settings.POSTROOM_MAX_REQUEST_BYTES
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send)
            return
        received = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading, drops what it spooled (in memory: the spool holds
                    # this much without rolling over) and sends nothing; we answer below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.application(scope, limited_receive, tracking_send)
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = (too_large_message() + "\n").encode()
        await send({
            "type": "http.response.start", "status": 413,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})
