"""What a rule may say: its conditions and actions, checked on save and matched at run time.

Threat model: a rule is written by a member (or an admin, for the organization) and runs later,
unattended, over mail they may no longer be allowed to touch, on a server they must not be able
to slow down. Defences here:

- every condition and action is parsed into a closed set of shapes (``definition_clean``):
  unknown fields, kinds and operators are refused with a message saying which one;
- regular expressions run on RE2 (``google-re2``), which matches in time linear in the input
  and has no backtracking, so ``(a+)+$`` costs what ``a+$`` costs (R38); patterns are capped at
  200 characters, and every matched text is capped before matching;
- globs (``*`` and ``?``) are translated to RE2 too, never to Python's ``re``;
- the ids a rule names (mailbox, team, label, member) are checked against what its owner may use
  now (``authorisation_problem``), on save and again on every run (``rules.engine``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

import re2
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from postroom.contacts.models import ContactBook
from postroom.conversations.models import Label
from postroom.core.fetch import FetchError, url_check
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership, Team, TeamMembership
from postroom.orgs.policy import Permission, role_allows

TEXT_FIELDS = ("from", "to", "cc", "subject", "body")
ADDRESS_FIELDS = ("from", "to", "cc")
TEXT_OPS = ("contains", "glob", "regex")
MAX_CONDITIONS = 20
MAX_ACTIONS = 10
MAX_VALUE = 200
MAX_MATCHED_TEXT = 10_000  # subject and address lists; the body is searched up to MAX_BODY
MAX_BODY = 200_000
MAX_SNOOZE_HOURS = 24 * 30
WEBHOOK_URL_MAX = 2000

PERSONAL_ONLY_ACTIONS = frozenset({"archive", "snooze"})
ORGANIZATION_ONLY_ACTIONS = frozenset({"webhook"})
ACTION_KINDS = (
    "assign", "label", "unlabel", "share_team", "move_to_team", "close", "archive", "snooze", "spam", "webhook", "auto_reply", "comment",
)  # fmt: skip
MAX_COMMENT = 2000
# A condition on the sender: in any contact book the rule's owner can see, or in one chosen book.
ANY_BOOK = "any"


def _error(message: str) -> ValidationError:
    return ValidationError({"definition": message})


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_VALUE:
        raise _error(f"{what}: give a text of 1 to {MAX_VALUE} characters.")
    return value


def _uuid(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _error(f"{what}: not a valid id.") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise _error(f"{what}: not a valid id.")
    return int(value)


def _clock(value: Any, what: str) -> str:
    try:
        return time.fromisoformat(str(value)).strftime("%H:%M")
    except ValueError:
        raise _error(f"{what}: give a time as HH:MM.") from None


def glob_to_re2(pattern: str) -> str:
    """A glob (``*`` any run of characters, ``?`` one character, everything else literal) as an
    RE2 pattern matching the whole text."""
    parts = {"*": ".*", "?": "."}
    return "(?s)" + "".join(parts.get(character, re2.escape(character)) for character in pattern)


def compile_pattern(op: str, value: str) -> Any:
    """The RE2 program for a glob or regex condition (case-insensitive)."""
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = 1 << 20
    options.log_errors = False
    source = glob_to_re2(value) if op == "glob" else value
    try:
        return re2.compile(source, options)
    except re2.error:
        raise _error("This pattern is not a regular expression we can run (RE2 syntax: no look-arounds or back-references).") from None


def _condition(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _error("Each condition is an object.")
    kind = raw.get("field")
    if kind in TEXT_FIELDS:
        op = raw.get("op", "contains")
        if op not in TEXT_OPS or (kind == "body" and op != "contains"):
            raise _error(f"Condition on {kind}: the operator must be one of {', '.join(TEXT_OPS if kind != 'body' else ('contains',))}.")
        value = _text(raw.get("value"), f"Condition on {kind}")
        if op != "contains":
            compile_pattern(op, value)
        return {"field": kind, "op": op, "value": value}
    if kind == "mailbox":
        return {"field": kind, "value": _uuid(raw.get("value"), "Mailbox condition")}
    if kind == "label":
        return {"field": kind, "value": _uuid(raw.get("value"), "Label condition")}
    if kind == "team":
        return {"field": kind, "value": _int(raw.get("value"), "Team condition")}
    if kind == "contact_book":
        book = raw.get("value")
        return {"field": kind, "value": ANY_BOOK if book == ANY_BOOK else _uuid(book, "Contact book condition")}
    if kind == "has_attachment":
        if not isinstance(raw.get("value"), bool):
            raise _error("Attachment condition: true or false.")
        return {"field": kind, "value": raw["value"]}
    if kind == "weekday":
        days = raw.get("value")
        if not isinstance(days, list) or not days or not all(isinstance(day, int) and 0 <= day <= 6 for day in days):
            raise _error("Weekday condition: a list of days, 0 (Monday) to 6 (Sunday).")
        return {"field": kind, "value": sorted(set(days))}
    if kind == "time":
        window = raw.get("value")
        if not isinstance(window, dict):
            raise _error('Time condition: give {"from": "HH:MM", "until": "HH:MM"} (UTC).')
        return {
            "field": kind,
            "value": {"from": _clock(window.get("from"), "Time condition"), "until": _clock(window.get("until"), "Time condition")},
        }
    raise _error(f"Unknown condition field {str(kind)[:40]!r}.")


def _action(raw: Any, *, personal: bool) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("kind") not in ACTION_KINDS:
        raise _error(f"Each action is an object whose kind is one of {', '.join(ACTION_KINDS)}.")
    kind = raw["kind"]
    if personal and kind in ORGANIZATION_ONLY_ACTIONS:
        raise _error("Only organization rules call webhooks.")
    if not personal and kind in PERSONAL_ONLY_ACTIONS:
        raise _error(f"{kind.title()} is a member's own choice: only personal rules do it (organization rules can close).")
    if kind == "assign":
        return {"kind": kind, "membership_id": _int(raw.get("membership_id"), "Assign")}
    if kind in ("label", "unlabel"):
        return {"kind": kind, "label_id": _uuid(raw.get("label_id"), "Label")}
    if kind in ("share_team", "move_to_team"):
        return {"kind": kind, "team_id": _int(raw.get("team_id"), "Team")}
    if kind == "snooze":
        hours = raw.get("hours")
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_SNOOZE_HOURS:
            raise _error(f"Snooze: a number of hours from 1 to {MAX_SNOOZE_HOURS}.")
        return {"kind": kind, "hours": hours}
    if kind == "webhook":
        url = raw.get("url")
        if not isinstance(url, str) or (not url.startswith("https://") and not url.startswith("http://")) or len(url) > WEBHOOK_URL_MAX:
            raise _error("Webhook: an http or https URL.")
        try:
            url_check(url)  # scheme, host syntax, port, credentials: resolved and re-checked when called
        except FetchError as error:
            raise _error(f"Webhook: {error.reason}.") from None
        return {"kind": kind, "url": url}
    if kind == "auto_reply":
        return {"kind": kind, "response_id": _uuid(raw.get("response_id"), "Automatic reply")}
    if kind == "comment":
        text = raw.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_COMMENT or "\x00" in text:
            raise _error(f"Comment: give a text of 1 to {MAX_COMMENT} characters.")
        return {"kind": kind, "text": text.strip()}
    return {"kind": kind}


def definition_clean(conditions: Any, actions: Any, *, personal: bool) -> dict[str, Any]:
    """The rule's definition in its one stored shape; ``ValidationError`` naming what is wrong."""
    if not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
        raise _error(f"Conditions: a list of at most {MAX_CONDITIONS}.")
    if not isinstance(actions, list) or not actions or len(actions) > MAX_ACTIONS:
        raise _error(f"Actions: a list of 1 to {MAX_ACTIONS}.")
    return {"conditions": [_condition(item) for item in conditions], "actions": [_action(item, personal=personal) for item in actions]}


# Authorisation ----------------------------------------------------------------------------------


def authorisation_problem(*, organization_id: int, owner: Membership | None, editor: Membership | None, definition: dict[str, Any]) -> str:
    """Why the rule may not run now (fixed text, safe to show), or "" when it may.

    A personal rule may use its owner's own mailboxes, the teams the owner belongs to, the
    organization's labels and the owner's own, and any member of the organization as assignee.
    An organization rule may use team mailboxes, every team and organization labels, and runs only
    while the member who last saved it is an admin (a demoted admin's rules stop until another
    admin reviews and saves them)."""
    if owner is None:
        if editor is None or editor.organization_id != organization_id or not role_allows(editor.role, Permission.MANAGE_TEAMS):
            return "The admin who last saved this rule is no longer an admin: an admin must review and save it again."
    elif owner.organization_id != organization_id:
        return "The rule's owner is not in this organization."
    own_teams = set(TeamMembership.objects.filter(membership=owner).values_list("team_id", flat=True)) if owner else set()
    for condition in definition.get("conditions", []):
        if condition["field"] == "mailbox":
            mailboxes = Mailbox.objects.filter(pk=condition["value"], organization_id=organization_id)
            mailboxes = mailboxes.filter(owner=owner, team__isnull=True) if owner else mailboxes.filter(team__isnull=False)
            if not mailboxes.exists():
                return (
                    "A mailbox in the conditions is gone or no longer yours."
                    if owner
                    else "A mailbox in the conditions is gone or no longer a team mailbox."
                )
        elif condition["field"] == "team" and not _team_allowed(condition["value"], organization_id, owner, own_teams):
            return "A team in the conditions is gone, or the rule's owner left it."
        elif condition["field"] == "label" and not _label_allowed(condition["value"], organization_id, owner):
            return "A label in the conditions is gone or not usable by the rule's owner."
        elif (
            condition["field"] == "contact_book"
            and condition["value"] != ANY_BOOK
            and not rule_books(organization_id=organization_id, owner=owner).filter(pk=condition["value"]).exists()
        ):
            return "A contact book in the conditions is gone or not readable by the rule's owner."
    for action in definition.get("actions", []):
        kind = action["kind"]
        if kind == "assign" and not Membership.objects.filter(pk=action["membership_id"], organization_id=organization_id).exists():
            return "The member to assign is no longer in the organization."
        if kind in ("label", "unlabel") and not _label_allowed(action["label_id"], organization_id, owner):
            return "A label in the actions is gone or not usable by the rule's owner."
        if kind in ("share_team", "move_to_team") and not _team_allowed(action["team_id"], organization_id, owner, own_teams):
            return "A team in the actions is gone, or the rule's owner left it."
        if kind == "auto_reply":
            from postroom.rules.autoreply import response_problem

            problem = response_problem(organization_id=organization_id, owner=owner, editor=editor, response_id=action["response_id"])
            if problem:
                return problem
    return ""


def rule_books(*, organization_id: int, owner: Membership | None) -> QuerySet[ContactBook]:
    """The contact books a rule's "sender is in a contact book" condition looks in: a personal
    rule, every book its owner can read; an organization rule, the organization's and the teams'
    books and any book shared with a team or the organization (never a member's unshared book)."""
    from postroom.contacts.models import BookKind, BookShare
    from postroom.contacts.selectors import books_visible

    if owner is not None:
        return books_visible(actor=owner)
    shared = BookShare.objects.values("book_id")
    return ContactBook.objects.filter(organization_id=organization_id).filter(~Q(kind=BookKind.PERSONAL) | Q(pk__in=shared))


def _team_allowed(team_id: int, organization_id: int, owner: Membership | None, own_teams: set[int]) -> bool:
    if owner is not None:
        return team_id in own_teams
    return Team.objects.filter(pk=team_id, organization_id=organization_id).exists()


def _label_allowed(label_id: str, organization_id: int, owner: Membership | None) -> bool:
    labels = Label.objects.filter(pk=label_id, organization_id=organization_id)
    return (
        (labels.filter(owner__isnull=True) | labels.filter(owner=owner)).exists() if owner else labels.filter(owner__isnull=True).exists()
    )


# Matching ---------------------------------------------------------------------------------------


@dataclass
class Facts:
    """What conditions look at, for one message of one conversation."""

    addresses: dict[str, list[list[str]]] = field(default_factory=dict)
    subject: str = ""
    body: str = ""
    mailbox_ids: set[str] = field(default_factory=set)
    team_ids: set[int] = field(default_factory=set)
    label_ids: set[str] = field(default_factory=set)
    has_attachments: bool = False
    now: datetime | None = None
    # The ids of the books (of those the rule may look in) holding the sender's address: a
    # callable, so that the blind-index lookup runs only for rules with that condition.
    sender_books: Callable[[], set[str]] = field(default=lambda: set())


def _field_texts(facts: Facts, kind: str) -> list[str]:
    if kind in ADDRESS_FIELDS:
        texts = []
        for entry in facts.addresses.get(kind, [])[:200]:
            name, address = ([*list(entry), "", ""])[:2]
            texts.append(f"{name} <{address}>" if name else str(address))
        return texts
    if kind == "subject":
        return [facts.subject[:MAX_MATCHED_TEXT]]
    return [facts.body[:MAX_BODY]]


def _address_only(text: str) -> str:
    return text[text.rfind("<") + 1 : -1] if text.endswith(">") and "<" in text else text


def condition_holds(condition: dict[str, Any], facts: Facts) -> bool:
    kind = condition["field"]
    value = condition["value"]
    if kind in TEXT_FIELDS:
        texts = _field_texts(facts, kind)
        if condition["op"] == "contains":
            needle = value.casefold()
            return any(needle in text.casefold() for text in texts)
        program = compile_pattern(condition["op"], value)
        if condition["op"] == "glob" and kind in ADDRESS_FIELDS:
            # A glob matches an address as a whole (*@example.com), or the full "Name <address>".
            return any(program.fullmatch(_address_only(text)) or program.fullmatch(text) for text in texts)
        if condition["op"] == "glob":
            return any(program.fullmatch(text) for text in texts)
        return any(program.search(text[:MAX_MATCHED_TEXT]) for text in texts)
    if kind == "mailbox":
        return value in facts.mailbox_ids
    if kind == "team":
        return value in facts.team_ids
    if kind == "label":
        return value in facts.label_ids
    if kind == "has_attachment":
        return facts.has_attachments is value
    if kind == "contact_book":
        books = facts.sender_books()
        return bool(books) if value == ANY_BOOK else value in books
    now = (facts.now or datetime.now(UTC)).astimezone(UTC)
    if kind == "weekday":
        return now.weekday() in value
    if kind == "time":
        start, until, clock = time.fromisoformat(value["from"]), time.fromisoformat(value["until"]), now.time().replace(tzinfo=None)
        return start <= clock < until if start <= until else clock >= start or clock < until  # a window may span midnight
    return False


def conditions_hold(definition: dict[str, Any], match: str, facts: Facts) -> bool:
    conditions = definition.get("conditions", [])
    if not conditions:
        return True
    results = (condition_holds(condition, facts) for condition in conditions)
    return any(results) if match == "any" else all(results)
