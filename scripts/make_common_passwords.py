#!/usr/bin/env python3
"""Regenerate ``postroom/accounts/common-passwords-long.txt``, the bundled list of long but
predictable passwords that ``postroom.accounts.passwords.CommonPasswordValidator`` rejects.

Why: our minimum length is 15, and Django's bundled list (20,000 leaked passwords) holds only a
few dozen entries that long, so on its own it rejects almost nothing a person could still pick.
People who are told "at least 15 characters" reach for the same tricks: keyboard walks, a common
password typed twice, a common password padded with a year, digits or "!!!", two common words
glued together, a well-known phrase. This script writes those out from Django's list.

Input: Django's ``django/contrib/auth/common-passwords.txt.gz`` (ordered by popularity) from
the Django installed next to this interpreter, plus the small word lists below. The output is
lowercased, deduplicated, sorted and filtered to 15..64 characters, so running it twice with the
same Django gives the same file byte for byte:

    .venv/bin/python scripts/make_common_passwords.py            # rewrite the file
    .venv/bin/python scripts/make_common_passwords.py --check    # fail if it is out of date

Forms that the validator already reduces on its own (a single listed word repeated, or padded
only with digits and symbols at the ends) are still written out, so the list is useful to any
other consumer, but the validator does not depend on them.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from itertools import product
from pathlib import Path

import django

OUTPUT = Path(__file__).resolve().parent.parent / "postroom" / "accounts" / "common-passwords-long.txt"
DJANGO_LIST = Path(django.__file__).resolve().parent / "contrib" / "auth" / "common-passwords.txt.gz"
MIN_LENGTH = 15
MAX_LENGTH = 64

KEYBOARD_ROWS = ["1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./", "!@#$%^&*()_+"]
KEYBOARD_COLUMNS = ["1qaz", "2wsx", "3edc", "4rfv", "5tgb", "6yhn", "7ujm", "8ik,", "9ol.", "0p;/"]
GERMAN_AND_FRENCH_ROWS = ["qwertzuiop", "asdfghjkl", "yxcvbnm", "azertyuiop", "qsdfghjklm", "wxcvbn"]

PADDINGS = [
    "123456789", "1234567890", "12345678910", "0987654321", "987654321", "11111111", "00000000",
    "!!!!!!!!", "!@#$%^&*", "123!@#", "1!2@3#4$", "69696969", "13131313", "777777777",
]
YEARS = [str(year) for year in range(1970, 2031, 4)]
PHRASES = [
    "correct horse battery staple", "the quick brown fox jumps over the lazy dog",
    "to be or not to be", "may the force be with you", "i love you forever", "i love you so much",
    "i love you to the moon and back", "let me in please", "password is password",
    "my password is password", "this is my password", "this is a password", "change this password",
    "changeme changeme", "welcome to the jungle", "hello world hello world", "open sesame open sesame",
    "god is good all the time", "jesus loves me this i know", "jesus christ is lord",
    "just do it just do it", "never gonna give you up", "all you need is love", "stairway to heaven",
    "hakuna matata hakuna matata", "winter is coming", "you shall not pass", "live laugh love forever",
    "carpe diem carpe diem", "one two three four five", "abcdefghijklmnopqrstuvwxyz",
    "abc123abc123abc123", "trustno1trustno1", "iloveyouiloveyou", "nothing else matters",
    "in god we trust", "the lord is my shepherd", "happy birthday to you", "somewhere over the rainbow",
    "whatever whatever", "football is life", "manchester united", "liverpool football club",
    "real madrid forever", "star wars episode", "harry potter and the", "game of thrones",
    "the walking dead", "lord of the rings", "the big bang theory", "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis", "antidisestablishmentarianism",
    "the cake is a lie", "do or do not there is no try", "i am the walrus", "the answer is 42",
    "keep calm and carry on", "yolo swag yolo swag", "we are the champions", "love you forever and ever",
    "forever and always", "always and forever", "till death do us part", "family first always",
    "my children are my life", "my kids are my life", "i love my family", "i love my wife",
    "i love my husband", "i love my kids", "i love my dog", "i love my mom", "i love jesus",
]
SUFFIX_WORDS = ["forever", "iloveyou", "password", "always", "123456", "qwerty", "family", "mylove"]


def read_django_list() -> list[str]:
    with gzip.open(DJANGO_LIST, "rt", encoding="utf-8") as handle:
        seen: dict[str, None] = {}
        for line in handle:
            entry = line.strip().lower()
            if entry:
                seen.setdefault(entry, None)
        return list(seen)


def keyboard_walks() -> set[str]:
    walks: set[str] = set()
    for rows in (KEYBOARD_ROWS[:4], GERMAN_AND_FRENCH_ROWS[:3], GERMAN_AND_FRENCH_ROWS[3:]):
        joined = "".join(rows)
        for start in range(len(joined)):
            for end in range(start + MIN_LENGTH, min(len(joined), start + 40) + 1):
                walks.add(joined[start:end])
    letter_rows = ["qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890", "0987654321", "poiuytrewq", "lkjhgfdsa", "mnbvcxz"]
    for first, second in product(letter_rows, repeat=2):
        walks.add(first + second)
        walks.add(first + first[::-1])
        for third in letter_rows:
            walks.add(first + second + third)
    for width in range(4, len(KEYBOARD_COLUMNS) + 1):
        walks.add("".join(KEYBOARD_COLUMNS[:width]))
        walks.add("".join(column[::-1] for column in KEYBOARD_COLUMNS[:width]))
        walks.add("".join(KEYBOARD_COLUMNS[:width]).upper())
        walks.add("".join(column[1:] for column in KEYBOARD_COLUMNS[:width]))
        walks.add("".join(column[1:] for column in KEYBOARD_COLUMNS[:width]) + "123")
    digits, letters = "1234567890", "qwertyuiop"
    for width in range(8, 11):
        walks.add("".join(d + c for d, c in zip(digits[:width], letters[:width], strict=True)))
        walks.add("".join(c + d for d, c in zip(digits[:width], letters[:width], strict=True)))
    return walks


def stretched(words: list[str]) -> set[str]:
    """A common password typed twice or three times, padded, or followed by a year."""
    forms: set[str] = set()
    for word in words:
        for times in (2, 3):
            forms.add(word * times)
            forms.add(f"{word}{word.capitalize() * (times - 1)}".lower())
        for padding in PADDINGS:
            forms.add(word + padding)
        for year in YEARS:
            forms.add(f"{word}{year}!!!!!!"[: max(MIN_LENGTH, len(word) + 5)])
            forms.add(f"{word}{year}{year}")
        for suffix in SUFFIX_WORDS:
            forms.add(word + suffix)
    return forms


def glued(words: list[str]) -> set[str]:
    """Two common passwords glued together, the way people reach fifteen characters."""
    return {first + second for first, second in product(words, repeat=2) if first != second}


def build() -> list[str]:
    django_list = read_django_list()
    commonest = django_list[:200]
    commonest_words = [entry for entry in django_list[:1500] if entry.isalpha()][:100]
    candidates: set[str] = set()
    candidates.update(entry for entry in django_list if len(entry) >= MIN_LENGTH)
    candidates.update(keyboard_walks())
    candidates.update(stretched(commonest))
    candidates.update(glued(commonest_words))
    for phrase in PHRASES:
        candidates.add(phrase)
        candidates.add(phrase.replace(" ", ""))
        candidates.add(phrase.replace(" ", "-"))
        candidates.add(phrase.replace(" ", "") + "1")
        candidates.add(phrase.replace(" ", "") + "!")
    return sorted(
        entry
        for entry in (candidate.lower().strip() for candidate in candidates)
        if MIN_LENGTH <= len(entry) <= MAX_LENGTH and entry.isprintable() and "\t" not in entry
    )


def render(entries: list[str]) -> str:
    header = (
        "# Long common passwords and passphrases (15..64 characters), lowercased and sorted.\n"
        f"# Generated by scripts/make_common_passwords.py from Django {django.__version__}'s list; "
        "do not edit by hand.\n"
    )
    return header + "".join(f"{entry}\n" for entry in entries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not what this script generates")
    arguments = parser.parse_args()
    text = render(build())
    if arguments.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run scripts/make_common_passwords.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10)) - 2} entries to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
