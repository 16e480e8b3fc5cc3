"""Reading the FETCH answers of an import without IMAPClient's character-by-character lexer.

IMAPClient parses a FETCH answer one byte at a time in Python (its lexer yields every character
through an iterator): a quarter to a third of the CPU the first import spends fetching
(bench/README.md, "The sync process, leaner"). The messages' bytes are literals it
hands on as they are; what it reads by the character is the short line before each one:
``1 (UID 1 FLAGS (\\Seen) INTERNALDATE "01-Jan-2024 09:00:00 +0000" MODSEQ (2) BODY[] {3401}``.

Attacker: the IMAP server (or whoever sits in its place) sends arbitrary answers. Defences:

- This is a fast path, never a second parser with its own opinion: ``fetch_messages`` sends the
  command and checks the answer exactly as ``IMAPClient.fetch`` does, and reads the answer itself
  only when every one of its parts has exactly the shape above (a full match of a strict pattern:
  decimal numbers without leading zeros, flags of letters, digits and ``$_.-`` after an optional
  backslash, a quoted date without escapes, the items in this order and upper case, the literal
  as long as announced, then a lone ``)``). Anything else, however harmless (an unsolicited FLAGS
  update, another item order, a flag ``NIL``), goes whole to IMAPClient's own parser, so an odd
  answer is read, or refused, exactly as before.
- What the fast path gives is what IMAPClient would: the same dictionary of UIDs to the same
  items (``SEQ``, ``FLAGS`` as a tuple of bytes, ``INTERNALDATE`` through IMAPClient's own
  converter, ``MODSEQ`` as a one-number tuple, ``BODY[]`` the literal itself), answers for UIDs
  not asked for dropped. ``tests/test_fetch_response.py`` compares both on Dovecot's answers and
  on generated ones.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from imapclient import IMAPClient
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import _convert_INTERNALDATE, parse_fetch_response

# Items of the import's FETCH of whole messages, in the order the fast path reads them back.
MESSAGE_ITEMS = ("BODY.PEEK[]", "FLAGS", "INTERNALDATE")
MESSAGE_ITEMS_WITH_MODSEQ = (*MESSAGE_ITEMS, "MODSEQ")

_NUMBER = rb"[1-9][0-9]{0,19}"
_FLAG = rb"\\?[A-Za-z$][A-Za-z0-9$_.\-]*"
# One message's line before its literal (IMAPClient's lexer reads the same tokens from it).
_MESSAGE_LINE = re.compile(
    rb"(" + _NUMBER + rb") \(UID (" + _NUMBER + rb") FLAGS \(((?:" + _FLAG + rb"(?: " + _FLAG + rb")*)?)\)"
    rb' INTERNALDATE "([A-Za-z0-9 :+\-]*)"(?: MODSEQ \((' + _NUMBER + rb")\))? BODY\[\] \{(" + _NUMBER + rb"|0)\}"
)


def _parsed_fast(data: list[Any], normalise_times: bool) -> defaultdict[int, dict[bytes, Any]] | None:
    """``parse_fetch_response(data, normalise_times, uid_is_key=True)`` when ``data`` has only
    the expected shape (see the module docstring), else None."""
    if len(data) % 2:
        return None
    parsed: defaultdict[int, dict[bytes, Any]] = defaultdict(dict)
    match = _MESSAGE_LINE.fullmatch
    for index in range(0, len(data), 2):
        part, trailer = data[index], data[index + 1]
        if type(part) is not tuple or len(part) != 2 or trailer != b")":
            return None
        line, literal = part
        if type(line) is not bytes or type(literal) is not bytes:
            return None
        found = match(line)
        if found is None:
            return None
        seq, uid, flags, date, modseq, size = found.groups()
        if len(literal) != int(size) or b"NIL" in flags.split(b" "):
            return None
        values: dict[bytes, Any] = {
            b"SEQ": int(seq),
            b"FLAGS": tuple(flags.split(b" ")) if flags else (),
            b"INTERNALDATE": _convert_INTERNALDATE(date, normalise_times),
        }
        if modseq is not None:
            values[b"MODSEQ"] = (int(modseq),)
        values[b"BODY[]"] = literal
        parsed[int(uid)].update(values)
    return parsed


def fetch_messages(client: IMAPClient, uids: Sequence[int], *, modseq: bool) -> dict[int, dict[bytes, Any]]:
    """``client.fetch(uids, MESSAGE_ITEMS (+ MODSEQ))``, the same answer, see the module docstring."""
    if not client.use_uid:  # pragma: no cover (sync always asks by UID)
        return client.fetch(list(uids), list(MESSAGE_ITEMS_WITH_MODSEQ if modseq else MESSAGE_ITEMS))
    if not uids:
        return {}
    imap = client._imap
    tag = imap._command(
        "UID", "FETCH", join_message_ids(uids), seq_to_parenstr_upper(list(MESSAGE_ITEMS_WITH_MODSEQ if modseq else MESSAGE_ITEMS))
    )
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    response = _parsed_fast(data, client.normalise_times) if data != [None] else None
    if response is None:
        response = parse_fetch_response(data, client.normalise_times, True)
    return {uid: response[uid] for uid in uids if uid in response}
