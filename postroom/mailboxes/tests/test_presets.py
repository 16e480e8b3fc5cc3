from postroom.mailboxes.connection import TlsMode
from postroom.mailboxes.presets import PRESETS


def test_presets_cover_the_big_providers() -> None:
    assert set(PRESETS) == {"gmail", "outlook", "icloud", "fastmail", "yahoo"}


def test_r49_presets_use_verified_tls_on_the_standard_ports() -> None:
    for preset in PRESETS.values():
        imap, smtp = preset.servers.imap, preset.servers.smtp
        assert (imap.port, imap.tls) == (993, TlsMode.IMPLICIT), preset.key
        assert (smtp.port, smtp.tls) in {(465, TlsMode.IMPLICIT), (587, TlsMode.STARTTLS)}, preset.key
        # Public providers have publicly trusted certificates: no private CA, system trust store.
        assert imap.private_ca_pem is None
        assert smtp.private_ca_pem is None
