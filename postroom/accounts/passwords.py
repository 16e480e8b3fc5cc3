"""Password rules after NIST SP 800-63B-4: length, not composition, plus a blocklist.

At least 15 characters (counted as Unicode code points), up to 1024 accepted, no rules about
digits or symbols. Rejected: passwords on a bundled list of common passwords — also when the
list entry is only padded out with digits, symbols or repetition to reach the minimum length
("password12345678", "qwertyqwertyqwerty") — and passwords built from context words: the
product's name, the organization's name, the user's name and email. The list is local: checking
a password never touches the network. Each rejection says why.
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import django
from django.core.exceptions import ValidationError

_NOT_LETTERS = re.compile(r"[^a-z]+")


class MaximumLengthValidator:
    def __init__(self, max_length: int = 1024) -> None:
        self.max_length = max_length

    def validate(self, password: str, user: Any = None) -> None:
        if len(password) > self.max_length:
            raise ValidationError(
                f"This password is longer than {self.max_length} characters.", code="password_too_long"
            )

    def get_help_text(self) -> str:
        return f"Up to {self.max_length} characters; spaces, emoji and any script are welcome."


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    path = Path(django.__file__).resolve().parent / "contrib" / "auth" / "common-passwords.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        django_list = {line.strip().lower() for line in handle if line.strip()}
    bundled = Path(__file__).with_name("common-passwords-long.txt")
    long_list = {line.strip().lower() for line in bundled.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}
    return frozenset(django_list | long_list)


def _collapse_repeats(text: str) -> str:
    """'qwertyqwertyqwerty' -> 'qwerty'; 'aaaaaaaa' -> 'a'."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def weak_forms(password: str) -> set[str]:
    """The password and what is left of it once padding and repetition are taken away."""
    lowered = password.lower().strip()
    letters = _NOT_LETTERS.sub("", lowered)
    stripped = lowered.strip("0123456789!@#$%^&*()_+-=.,?~ ")
    forms = {lowered, stripped, letters, _collapse_repeats(lowered), _collapse_repeats(letters), _collapse_repeats(stripped)}
    return {form for form in forms if form}


class CommonPasswordValidator:
    def validate(self, password: str, user: Any = None) -> None:
        listed = common_passwords()
        for form in weak_forms(password):
            if form in listed and (form == password.lower() or len(form) >= 4):
                raise ValidationError(
                    "This password is on a list of commonly used passwords (or is one padded out "
                    "with digits, symbols or repetition). Choose something less predictable — "
                    "several unrelated words work well.",
                    code="password_too_common",
                )

    def get_help_text(self) -> str:
        return "It must not be a common password."


class ContextWordsValidator:
    """Rejects passwords that are mostly the product's, organization's or user's own words."""

    def context_words(self, user: Any) -> set[str]:
        words = {"postroom"}
        if user is None:
            return words
        values = [getattr(user, "email", "") or "", getattr(user, "name", "") or ""]
        # Before the account exists (first-run setup, invitations) the caller names the
        # organization; afterwards the memberships say which organizations count.
        values.extend(getattr(user, "_organization_names_for_password_check", ()))
        if getattr(user, "pk", None) is not None:
            from postroom.orgs.models import Organization

            values.extend(Organization.objects.filter(memberships__user_id=user.pk).values_list("name", flat=True))
        for value in values:
            parts = [part for part in re.split(r"[^a-z0-9]+", value.lower()) if part]
            words.update(part for part in parts if len(part) >= 4)
            joined = "".join(parts)
            if len(joined) >= 4:
                words.add(joined)
        return words

    def validate(self, password: str, user: Any = None) -> None:
        for form in weak_forms(password):
            for word in self.context_words(user):
                if word == form or (word in form and len(word) * 2 >= len(form)):
                    raise ValidationError(
                        "This password is too close to your name, your email address, your "
                        "organization's name or the word “Postroom”.",
                        code="password_context_word",
                    )

    def get_help_text(self) -> str:
        return "It must not be built from your name, email or organization's name."
