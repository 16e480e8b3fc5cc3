"""The import's FETCH answers read on the fast path give what IMAPClient's parser gives, and
every other answer goes to that parser (``sync.fetch_response``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from postroom.sync import fetch_response
from postroom.sync.fetch_response import _parsed_fast, fetch_messages
from postroom.testing.dovecot import Dovecot


def _same(data: list[Any], normalise_times: bool = False) -> None:
    expected = parse_fetch_response(list(data), normalise_times, True)
    got = _parsed_fast(list(data), normalise_times)
    assert got is not None  # read on the fast path
    assert got == expected
    assert type(got) is type(expected)
    for uid, items in expected.items():
        assert list(got[uid].items()) == list(items.items())  # the same keys in the same order
        for name, value in items.items():
            assert type(got[uid][name]) is type(value)
            if isinstance(value, datetime):
                assert got[uid][name].utcoffset() == value.utcoffset()


def _line(seq: int, uid: int, flags: str, date: str, modseq: int | None, size: int) -> bytes:
    modseq_item = f" MODSEQ ({modseq})" if modseq is not None else ""
    return f'{seq} (UID {uid} FLAGS ({flags}) INTERNALDATE "{date}"{modseq_item} BODY[] {{{size}}}'.encode()


def test_dovecot_answers_read_fast_as_imapclient_reads_them(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    user = dovecot.create_user("fetcher")
    bodies = [b"Subject: one\r\n\r\nBody\r\n", b"X: y\r\n\r\n", b"Subject: (odd) {3}\r\n\r\n)\r\n* 9 FETCH (FLAGS (\\Deleted))\r\n" * 50]
    for number, body in enumerate(bodies):
        flags = [("\\Seen",), ("\\Flagged", "\\Answered", "$Forwarded", "Junk"), ()][number]
        dovecot.append(user, body, flags=flags, received_at=datetime(2025, 3, 1, 12, number, tzinfo=UTC))
    with dovecot.connect(user) as client:
        client._imap.debug = 0
        client.enable("CONDSTORE")
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        captured: list[list[Any]] = []
        original = fetch_response._parsed_fast

        def capture(data: list[Any], normalise_times: bool) -> Any:
            captured.append(list(data))
            return original(data, normalise_times)

        monkeypatch.setattr(fetch_response, "_parsed_fast", capture)
        for modseq, items in ((False, fetch_response.MESSAGE_ITEMS), (True, fetch_response.MESSAGE_ITEMS_WITH_MODSEQ)):
            captured.clear()
            fast = fetch_messages(client, uids, modseq=modseq)
            assert fast == client.fetch(uids, list(items))
            assert [fast[uid][b"BODY[]"] for uid in uids] == bodies
            _same(captured[0])
            _same(captured[0], normalise_times=True)
        monkeypatch.setattr(fetch_response, "_parsed_fast", original)
        assert fetch_messages(client, [], modseq=False) == {}
        assert fetch_messages(client, [max(uids) + 10], modseq=False) == {}


flag = st.from_regex(r"\\?[A-Za-z$][A-Za-z0-9$_.\-]{0,8}", fullmatch=True).filter(lambda value: value != "NIL")
message = st.tuples(
    st.integers(1, 10**6),
    st.integers(1, 10**12),
    st.lists(flag, max_size=4).map(" ".join),
    st.sampled_from(["01-Jan-2024 09:00:00 +0000", " 1-Feb-2025 23:59:59 -0730", "31-Dec-1999 00:00:00 +1400", "garbage"]),
    st.one_of(st.none(), st.integers(1, 2**63)),
    st.binary(max_size=64),
)


@given(st.lists(message, max_size=5), st.booleans())
def test_generated_answers_read_fast_as_imapclient_reads_them(messages: list[tuple[Any, ...]], normalise_times: bool) -> None:
    data: list[Any] = []
    for seq, uid, flags, date, modseq, literal in messages:
        data += [(_line(seq, uid, flags, date, modseq, len(literal)), literal), b")"]
    _same(data, normalise_times)


@pytest.mark.parametrize(
    "data",
    [
        [b'1 (UID 5 FLAGS (\\Seen))'],  # an unsolicited update, no literal
        [(_line(1, 5, "\\Seen", "01-Jan-2024 09:00:00 +0000", None, 3), b"abc"), b")", b"2 (UID 6 FLAGS ())"],
        [(_line(1, 5, "NIL", "01-Jan-2024 09:00:00 +0000", None, 3), b"abc"), b")"],  # IMAPClient reads NIL as None
        [(_line(1, 5, "", "01-Jan-2024 09:00:00 +0000", None, 4), b"abc"), b")"],  # shorter than announced
        [(_line(1, 5, "", "01-Jan-2024 09:00:00 +0000", None, 3), b"abc"), b" BODY[HEADER] NIL)"],  # more after the literal
        [(b'1 (FLAGS () UID 5 INTERNALDATE "01-Jan-2024 09:00:00 +0000" BODY[] {3}', b"abc"), b")"],  # another order
        [(b'1 (UID 5 FLAGS (\\Seen) INTERNALDATE "01-Jan-2024 \\"09" BODY[] {3}', b"abc"), b")"],  # an escape
        [(b'1 (UID 05 FLAGS () INTERNALDATE "01-Jan-2024 09:00:00 +0000" BODY[] {3}', b"abc"), b")"],  # a leading zero
        [(b'1 (uid 5 FLAGS () INTERNALDATE "01-Jan-2024 09:00:00 +0000" BODY[] {3}', b"abc"), b")"],  # lower case
        [(b'1 (UID 5  FLAGS () INTERNALDATE "01-Jan-2024 09:00:00 +0000" BODY[] {3}', b"abc"), b")"],  # two spaces
        [(b'1 (UID 5 FLAGS (%a) INTERNALDATE "01-Jan-2024 09:00:00 +0000" BODY[] {3}', b"abc"), b")"],  # a special
    ],
)
def test_any_other_answer_is_left_to_imapclient(data: list[Any]) -> None:
    assert _parsed_fast(data, False) is None


def test_an_answer_imapclient_refuses_is_refused_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    short = [(_line(1, 5, "", "01-Jan-2024 09:00:00 +0000", None, 4), b"abc"), b")"]
    with pytest.raises(ProtocolError):
        parse_fetch_response(short, False, True)

    class Imap:
        def _command(self, *arguments: Any) -> str:
            return "A1"

        def _command_complete(self, name: str, tag: str) -> tuple[str, list[Any]]:
            return "OK", [b"done"]

        def _untagged_response(self, typ: str, data: Any, name: str) -> tuple[str, list[Any]]:
            return typ, list(short)

    class Client:
        use_uid = True
        normalise_times = False
        _imap = Imap()

        def _checkok(self, command: str, typ: str, data: Any) -> None:
            assert typ == "OK"

    with pytest.raises(ProtocolError):
        fetch_messages(Client(), [5], modseq=False)  # type: ignore[arg-type]
