"""Counting a test's round trips to the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection


@contextmanager
def round_trips() -> Iterator[list[Any]]:
    """Per query run in the block: the psycopg pipeline it went in (PostgreSQL; psycopg's own
    attribute), else None. ``trips_of`` counts the round trips."""
    seen: list[Any] = []

    def note(execute: Callable[..., Any], sql: str, parameters: Any, many: bool, context: dict[str, Any]) -> Any:
        seen.append(getattr(connection.connection, "_pipeline", None))
        return execute(sql, parameters, many, context)

    with connection.execute_wrapper(note):
        yield seen


def trips_of(seen: list[Any]) -> int:
    """The round trips of ``round_trips``: one per pipeline and one per query outside one."""
    return len({id(pipeline) for pipeline in seen if pipeline is not None}) + sum(pipeline is None for pipeline in seen)
