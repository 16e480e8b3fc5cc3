"""The test peers themselves: what later sync tests rely on must hold."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
from collections.abc import Callable

import imapclient
import pytest
import trustme
from imapclient.imapclient import ARCHIVE, JUNK, SEEN, SENT, TRASH

from postroom.testing.dovecot import Dovecot, MailUser
from postroom.testing.smtp import SmtpPeer, SmtpTls

MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nbody\r\n"


def test_dovecot_offers_special_use_folders_and_the_sync_extensions(dovecot: Dovecot, mail_user: MailUser) -> None:
    with dovecot.connect(mail_user) as client:
        assert {b"IDLE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"UIDPLUS", b"MOVE"} <= set(client.capabilities())
        assert client.enable("QRESYNC") == [b"QRESYNC"]
        assert client.find_special_folder(SENT) == "Sent"
        assert client.find_special_folder(ARCHIVE) == "Archive"
        assert client.find_special_folder(TRASH) == "Trash"
        assert client.find_special_folder(JUNK) == "Junk"
        assert b"HIGHESTMODSEQ" in client.select_folder("INBOX")


def test_each_user_has_a_separate_mailbox(dovecot: Dovecot, mail_user: MailUser) -> None:
    other = dovecot.create_user()
    dovecot.append(mail_user, MESSAGE)
    with dovecot.connect(other) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    with pytest.raises(imapclient.exceptions.LoginError), dovecot.connect(MailUser(name=other.name, password=mail_user.password)):
        pass


def test_append_returns_the_uid_and_idle_sees_new_mail(dovecot: Dovecot, mail_user: MailUser) -> None:
    with dovecot.connect(mail_user) as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        uid = dovecot.append(mail_user, MESSAGE, flags=[SEEN])
        responses = watcher.idle_check(timeout=10)
        watcher.idle_done()
        assert (1, b"EXISTS") in responses
        fetched = watcher.fetch([uid], ["FLAGS", "RFC822"])
    assert fetched[uid][b"RFC822"] == MESSAGE
    assert SEEN in fetched[uid][b"FLAGS"]


def test_restart_keeps_the_mail_and_drops_open_sessions(dovecot: Dovecot, mail_user: MailUser) -> None:
    uid = dovecot.append(mail_user, MESSAGE, folder="Archive")
    with dovecot.connect(mail_user) as client:
        uid_validity = client.select_folder("Archive")[b"UIDVALIDITY"]
        dovecot.restart()
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            client.noop()
    with dovecot.connect(mail_user) as client:
        status = client.select_folder("Archive")
        assert (status[b"UIDVALIDITY"], status[b"EXISTS"]) == (uid_validity, 1)
        assert client.search(["ALL"]) == [uid]


def test_stopped_dovecot_refuses_connections_until_started(dovecot: Dovecot, mail_user: MailUser) -> None:
    dovecot.stop()
    assert not dovecot.running
    with pytest.raises(ConnectionRefusedError), dovecot.connect(mail_user):
        pass
    dovecot.start()
    with dovecot.connect(mail_user) as client:
        assert client.noop()


def test_smtp_peer_captures_envelopes_and_can_require_auth(
    smtp_peer_requiring_auth: SmtpPeer, mail_user: MailUser, mail_test_ca: trustme.CA
) -> None:
    smtp_peer_requiring_auth.add_account(mail_user)
    context = ssl.create_default_context(cadata=mail_test_ca.cert_pem.bytes().decode())
    with smtplib.SMTP(smtp_peer_requiring_auth.host, smtp_peer_requiring_auth.port, timeout=10) as smtp:
        smtp.starttls(context=context)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
        assert refused.value.smtp_code == 530
        smtp.login(mail_user.name, mail_user.password)
        smtp.sendmail("alice@example.test", ["bob@example.test", "carol@example.test"], MESSAGE)
    [received] = smtp_peer_requiring_auth.messages
    assert received.mail_from == "alice@example.test"
    assert received.recipients == ("bob@example.test", "carol@example.test")
    assert received.content == MESSAGE
    assert received.authenticated_as == mail_user.name


def test_smtp_peer_transcript_is_decrypted_after_starttls(make_smtp_peer: Callable[..., SmtpPeer], mail_test_ca: trustme.CA) -> None:
    peer = make_smtp_peer(tls=SmtpTls.STARTTLS)
    context = ssl.create_default_context(cadata=mail_test_ca.cert_pem.bytes().decode())
    with smtplib.SMTP(peer.host, peer.port, timeout=10) as smtp:
        smtp.starttls(context=context)
        smtp.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    transcript = peer.transcript.lower()
    assert transcript.index(b"starttls") < transcript.index(b"rcpt to:<bob@example.test>")
