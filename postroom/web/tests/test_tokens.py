"""R47: the tokens Postroom sends to people come from ``secrets`` with 256 bits."""

from __future__ import annotations

import base64
import re

import pytest
from django.core import mail

from postroom.accounts.actions import setup_token_issue
from postroom.conftest import Cast
from postroom.core.tokens import new_token, token_hash, token_matches
from postroom.orgs.actions import invitation_create

URL_SAFE_256_BITS = re.compile(r"[A-Za-z0-9_-]{43}")


def assert_strong(token: str) -> None:
    assert URL_SAFE_256_BITS.fullmatch(token), token
    assert len(base64.urlsafe_b64decode(token + "=")) == 32


def test_r47_new_tokens_are_256_random_bits_in_url_safe_text() -> None:
    tokens = [new_token() for _ in range(2000)]
    for token in tokens:
        assert_strong(token)
    assert len(set(tokens)) == len(tokens)
    # Every character of the alphabet turns up: the text is not hex or a narrower encoding.
    assert set("".join(tokens)) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_r47_tokens_are_stored_as_purpose_bound_hmacs() -> None:
    token = new_token()
    stored = token_hash("invitation", token)
    assert token not in stored
    assert len(stored) == 64
    assert token_matches("invitation", token, stored)
    assert not token_matches("setup", token, stored)
    assert not token_matches("invitation", new_token(), stored)


@pytest.mark.django_db
def test_r47_setup_token_is_strong() -> None:
    token = setup_token_issue()
    assert token is not None
    assert_strong(token)


@pytest.mark.django_db
def test_r47_invitation_token_is_strong_and_only_in_the_mail(cast: Cast, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = invitation_create(actor=cast.alice_membership, email="gina@example.test", role="member")
    assert_strong(token)
    assert token not in invitation.token_hash
    assert token in mail.outbox[-1].body
