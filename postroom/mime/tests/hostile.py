"""The hostile corpora (``corpus/xss.txt``, ``corpus/remote.txt``) and plain-text payloads, for
the sanitiser's unit tests and the browser tests that deliver them as mail.

Entries are separated by a line holding ``%%``. Every remote reference points at a ``.invalid``
host (``canary.invalid``, ``xss.invalid``...) that ``with_canary`` rewrites to a real listener,
so a test can count what would have been fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
_INVALID_HOST = re.compile(r"\b[a-z0-9.-]+\.invalid\b", re.IGNORECASE)

# Plain-text bodies that have broken linkifiers (Roundcube CVE-2026-54433 and its kind).
PLAIN_TEXT_PAYLOADS = (
    'See https://canary.invalid/a"><script>window.__xss=1</script> for details',
    "Click http://canary.invalid/<img src=x onerror=alert(1)> now",
    'javascript:alert(1) and <a href="javascript:alert(1)">this</a>',
    'mailto:x@canary.invalid?subject="><svg onload=alert(1)>',
    "https://canary.invalid/path?q='onmouseover='alert(1)' trailing",
    'Quoted:\n> <script>window.__xss=1</script>\n> https://canary.invalid/"onerror=alert(1)\n\n-- \n<img src=x onerror=alert(1)>',
    "&lt;script&gt;alert(1)&lt;/script&gt; and &#60;img src=x onerror=alert(1)&#62;",
    'www.canary.invalid/<script>alert(1)</script> dana@canary.invalid"><script>alert(1)</script>',
)


def corpus(name: str) -> list[str]:
    return [entry.strip("\n") for entry in (CORPUS / name).read_text().split("\n%%\n")]


def with_canary(payload: str, host: str) -> str:
    """``payload`` with every ``*.invalid`` host replaced by ``host`` (e.g. ``127.0.0.1:8123``)."""
    return _INVALID_HOST.sub(host, payload)
