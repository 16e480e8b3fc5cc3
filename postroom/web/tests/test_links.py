"""``link``: ``reverse``, remembered, with the same answers."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings
from django.urls import NoReverseMatch, reverse, set_script_prefix

from postroom.web.links import link


def test_a_link_is_what_reverse_gives() -> None:
    label = uuid.uuid4()
    for name, args in (("conversations:list", ["acme"]), ("conversations:label", ["acme", label]), ("conversations:team", ["acme", 7]),
                       ("outbox:drafts", ["beta"]), ("web:home", [])):  # fmt: skip
        assert link(name, *args) == reverse(name, args=args)
        assert link(name, *args) == reverse(name, args=args)  # remembered, the same
    with pytest.raises(NoReverseMatch):
        link("conversations:team", "acme", "not-a-number")


def test_the_script_prefix_and_the_urlconf_are_part_of_the_key() -> None:
    before = link("conversations:list", "acme")
    set_script_prefix("/mail/")
    try:
        assert link("conversations:list", "acme") == "/mail" + before
    finally:
        set_script_prefix("/")
    assert link("conversations:list", "acme") == before
    with override_settings(ROOT_URLCONF="postroom.web.tests.urls_for_links"):
        assert link("conversations:list", "acme") == "/elsewhere/acme/"
