import gc
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest
from django.template import engines
from django.urls import get_resolver

from postroom.core.uploads import RequestSizeLimit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")


class SyncChainHandler(ASGIHandler):
    """Django's ASGI handler with the middleware chain run as one synchronous call.

    Every middleware of ours is synchronous, and so is every page view. Django's own handler
    builds its chain around an asynchronous core, so a request went from the event loop to its
    thread and back three times (into the chain, out to the core, into the view); here it goes
    once, as under WSGI. The live stream, the one asynchronous view, still runs on the event
    loop: the synchronous core hands it over (``async_to_sync``).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> Any:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


class RequestThreads:
    """ASGI wrapper: each HTTP request's synchronous work runs on a thread lent to it alone.

    Django gives every request a new ``ThreadSensitiveContext``, i.e. a new thread, started and
    joined per request: the largest cost of a small request (``bench/README.md``, "The request's
    thread, prepared statements…"). Here a request borrows a one-thread executor that earlier
    requests have finished with. It still has that thread to itself for its whole life, so what
    is bound to a thread stays with the request: Django keeps database connections per thread,
    and each request hands its connection back to the pool at its end, as before.
    """

    KEEP_IDLE = 32  # beyond this many idle threads (after a burst of streams), stop the extra ones

    def __init__(self, application: Any) -> None:
        self.application = application
        self._idle: list[ThreadPoolExecutor] = []  # touched only on the event loop's thread

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.application(scope, receive, send)
        finally:
            if len(self._idle) < self.KEEP_IDLE:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)


def build_application() -> RequestThreads:
    """The production ASGI application, with no request thread lent yet."""
    django.setup(set_prefix=False)
    # Outermost: a body too large to keep in memory is refused before Django spools it to disk (R45).
    return RequestThreads(RequestSizeLimit(SyncChainHandler()))


def server_application() -> RequestThreads:
    """The application of one ``postroom web`` worker (uvicorn's factory): the module's
    ``application``, with everything that lives as long as the process made at start and frozen.

    Every view module is imported and every template of ours compiled now, then what start-up
    made (Django, the apps, the templates: most of the heap) is moved out of the cyclic
    collector's reach (``gc.freeze``). Without this, the collector's full passes, which come
    every few hundred requests, walked that heap again each time: 40-110 ms during which the
    worker answered nothing, the slowest requests of the inbox bench (bench/README.md).
    """
    get_resolver().url_patterns  # noqa: B018 (imports every view module)
    engine = engines["django"]
    package = Path(__file__).resolve().parent
    for folder in map(Path, engine.template_dirs):
        if folder.is_relative_to(package):
            for template in sorted(folder.rglob("*.html")):
                engine.get_template(template.relative_to(folder).as_posix())
    gc.collect()
    gc.freeze()
    return application


application = build_application()
