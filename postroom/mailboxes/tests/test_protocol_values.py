"""R33: values that reach IMAP command lines cannot smuggle in a second command."""

from __future__ import annotations

import pytest

from postroom.mailboxes.connection import PasswordCredentials, ServerSettings, TlsMode, open_imap
from postroom.mailboxes.protocol_values import UnsafeProtocolValue, imap_folder_name, imap_uid, imap_uids
from postroom.testing.dovecot import Dovecot, MailUser

MESSAGE = b"From: alice@example.test\r\nSubject: keep me\r\n\r\nstill here\r\n"


def signed_in(dovecot: Dovecot, user: MailUser):
    server = ServerSettings(host=dovecot.host, port=dovecot.imaps_port, tls=TlsMode.IMPLICIT, private_ca_pem=dovecot.ca_pem)
    return open_imap(server, PasswordCredentials(username=user.name, password=user.password), timeout=5)


def test_r33_folder_names_with_quotes_stay_one_folder(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.append(mail_user, MESSAGE)
    with dovecot.connect(mail_user) as setup:
        setup.create_folder("Keep")
    hostile = ['INBOX" DELETE "INBOX', 'Keep" DELETE "Keep', 'Archiv \\"2024\\"', "Entwürfe"]
    client = signed_in(dovecot, mail_user)
    try:
        for name in hostile:
            client.create_folder(imap_folder_name(name))
            assert client.select_folder(imap_folder_name(name))[b"EXISTS"] == 0
    finally:
        client.logout()
    folders = dovecot.folders(mail_user)
    assert set(hostile) <= set(folders)
    assert {"INBOX", "Keep"} <= set(folders)
    with dovecot.connect(mail_user) as check:
        assert check.select_folder("INBOX")[b"EXISTS"] == 1


@pytest.mark.parametrize("hostile", ["Keep\r\nA1 DELETE Keep", "Keep\nA1 DELETE Keep", "Keep\rA1 DELETE Keep", "Keep\0", "Keep\x1b[2J", ""])
def test_r33_folder_names_with_line_breaks_or_controls_are_refused(dovecot: Dovecot, mail_user: MailUser, hostile: str) -> None:
    with dovecot.connect(mail_user) as setup:
        setup.create_folder("Keep")
    client = signed_in(dovecot, mail_user)
    try:
        with pytest.raises(UnsafeProtocolValue):
            client.delete_folder(imap_folder_name(hostile))
        # The session is still in step with the server.
        assert client.folder_exists("Keep")
    finally:
        client.logout()
    assert "Keep" in dovecot.folders(mail_user)


@pytest.mark.parametrize("hostile", ["1:*", "1 DELETE INBOX", "1\r\nA1 EXPUNGE", "-1", "0", str(2**32), "١", True, 0, 2**32, 1.5])
def test_r33_uids_must_be_plain_32_bit_numbers(hostile: object) -> None:
    with pytest.raises(UnsafeProtocolValue):
        imap_uid(hostile)  # type: ignore[arg-type]


def test_r33_validated_uids_fetch_exactly_those_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    first = dovecot.append(mail_user, MESSAGE)
    second = dovecot.append(mail_user, MESSAGE.replace(b"keep me", b"and me"))
    assert imap_uids([str(second), first, second]) == [first, second]
    client = signed_in(dovecot, mail_user)
    try:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch(imap_uids([str(second)]), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    finally:
        client.logout()
    assert list(fetched) == [second]
    assert b"and me" in fetched[second][b"BODY[HEADER.FIELDS (SUBJECT)]"]
