"""Every route of the product as a concrete path, for tests that must cover all of them.

The walk reads the URL resolver, so a route added by any app is crawled without anyone editing
these tests. Path parameters are filled with objects of the test cast (organization A's slug, a
team, a membership, an invitation), so the crawl reaches real pages, not only 404s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, resolve

_ROUTE_PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?:[^()]|\([^()]*\))*\)")


@dataclass(frozen=True)
class Route:
    pattern: str
    path: str
    callback: Callable[..., Any]

    @property
    def label(self) -> str:
        return f"{self.pattern} ({getattr(self.callback, '__module__', '?')})"


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, Callable[..., Any]]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.callback


def all_routes(values: dict[str, str]) -> list[Route]:
    """Each route with its parameters replaced from ``values`` (by name, else ``"1"``)."""
    routes = []
    seen_paths: set[str] = set()
    for pattern, callback in _walk(get_resolver().url_patterns):
        # Regex groups first: their "(?P<name>" would otherwise look like a route parameter.
        filled = _REGEX_GROUP.sub(lambda match: values.get(match["name"], "1"), pattern)
        filled = _ROUTE_PARAMETER.sub(lambda match: values.get(match["name"], "1"), filled)
        path = "/" + filled.replace("^", "").replace("$", "")
        if path in seen_paths:
            continue  # shadowed by an earlier route on the same path (our gated or hardened allauth views)
        seen_paths.add(path)
        if resolve(path).func is not callback:
            raise AssertionError(f"the crawler built {path!r} for {pattern!r}, which resolves elsewhere: fix the sample values")
        routes.append(Route(pattern=pattern, path=path, callback=callback))
    return routes
