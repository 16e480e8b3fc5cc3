"""Single-use secrets sent to people (setup, invitations): 256 random bits, stored as HMACs."""

from __future__ import annotations

import hmac
import secrets

from django.utils.crypto import salted_hmac


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(purpose: str, token: str) -> str:
    return salted_hmac(f"postroom.token.{purpose}", token, algorithm="sha256").hexdigest()


def token_matches(purpose: str, token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(purpose, token), stored_hash)
