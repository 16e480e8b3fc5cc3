"""CSV that spreadsheets cannot be tricked into executing (SECURITY.md R41)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\x00")


def neutralise_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # After any leading whitespace (spaces, newlines, ideographic spaces…), which some spreadsheets skip.
    if text.lstrip().startswith(FORMULA_TRIGGERS) or text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_rows(header: list[str], rows: Iterable[Iterable[object]]) -> Iterable[str]:
    """Yield the CSV text line by line (for streaming responses)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    for row in _chain(header, rows):
        writer.writerow([neutralise_cell(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _chain(header: list[str], rows: Iterable[Iterable[object]]) -> Iterable[Iterable[object]]:
    yield header
    yield from rows
