"""``link(name, *args)``: ``reverse(name, args=args)``, remembered.

Every page's shell names the same few dozen URLs (the sidebar's views and each organization's
sections, the bell's forms), and ``reverse`` resolves each through the URL patterns again on
every request: 44 calls and ~7 % of the inbox page's CPU (bench/README.md, issue #4). A URL
depends only on its name, its arguments, the script prefix and the URL configuration, which are
the key here; the most recently used thousands are kept.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse


def link(name: str, *args: Any) -> str:
    urlconf = get_urlconf() or settings.ROOT_URLCONF  # a request's own, else the settings'
    return _link(name, tuple(str(argument) for argument in args), get_script_prefix(), urlconf)


@lru_cache(maxsize=4096)
def _link(name: str, args: tuple[str, ...], prefix: str, urlconf: Any) -> str:
    return reverse(name, args=args, urlconf=urlconf)
