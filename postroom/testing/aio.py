"""Running a test's asynchronous scenario from synchronous test code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_fresh_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own. A browser test earlier in the same test process
    leaves Playwright's event loop running on the main thread, where ``asyncio.run`` refuses to
    start another; which tests share a process depends on how pytest-xdist hands them out."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as runner:
        return runner.submit(asyncio.run, coroutine).result()
