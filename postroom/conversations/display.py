"""What the inbox pages show, made from what the selectors read: no queries and no writes here.

Sender names, subjects and snippets come from mail that outsiders wrote: they are returned as
plain strings and escaped by the templates like every other value (SECURITY.md R28).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils import timezone

from postroom.conversations.models import (
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    Place,
    TimelineEvent,
)
from postroom.conversations.selectors import PageRow, RowAssignee, RowLabel
from postroom.core.keys import org_scope
from postroom.mime.text import BlockKind, TextBlock, text_blocks

_FOLDED = frozenset({BlockKind.QUOTE, BlockKind.ATTRIBUTION, BlockKind.SIGNATURE})


def _name(pair: Any) -> str:
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return str(pair[0] or pair[1] or "")
    return ""


def row_sender(direction: str | None, addresses: dict[str, Any] | None) -> str:
    """Who a list row names: the sender of the latest message, or its recipients when it is ours
    (the row then says that it was answered); "" without a message (``direction`` None)."""
    if direction is None:
        return ""
    addresses = addresses or {}
    if direction == Direction.OUTBOUND:
        names = [_name(pair) for pair in [*addresses.get("to", []), *addresses.get("cc", [])]]
        names = [name for name in names if name]
        return f"{', '.join(names[:2])}{' …' if len(names) > 2 else ''}" if names else "(no recipient)"
    senders = [_name(pair) for pair in addresses.get("from", [])]
    return next((name for name in senders if name), "(unknown sender)")


@dataclass
class ListItem:
    """One row of a conversation list."""

    conversation_id: UUID
    subject: str | None
    unread: bool
    shared: bool
    last_activity_at: datetime
    snoozed_until: datetime | None
    sender: str
    snippet: str
    messages: int
    attachments: bool
    labels: list[RowLabel]
    assignees: list[RowAssignee]
    status: str
    snoozed: bool
    answered: bool


def list_item(row: PageRow, now: datetime | None = None) -> ListItem:
    """``row`` comes from ``selectors.view_page``; its sealed subject, sender and snippet are
    opened here (``now``: the moment the page is drawn, for the snooze mark)."""
    message = row.last_message
    if row.place in (Place.TRASH, Place.SPAM):
        status = row.place
    else:
        status = row.status if row.status != ConversationStatus.OPEN else ""
    scope = org_scope(row.organization_id)
    subject = Conversation.subject.open_stored(model=Conversation, scope=scope, row=row.conversation_id, stored=row.subject_sealed)
    if message is not None:
        addresses = Message.addresses.open_stored(model=Message, scope=scope, row=message.id, stored=message.addresses_sealed)
        snippet = Message.snippet.open_stored(model=Message, scope=scope, row=message.id, stored=message.snippet_sealed)
    else:
        addresses, snippet = None, None
    now = now or timezone.now()
    return ListItem(
        conversation_id=row.conversation_id,
        subject=subject,
        unread=row.unread,
        shared=row.is_shared,
        last_activity_at=row.last_activity_at,
        snoozed_until=row.snoozed_until,
        sender=row_sender(message.direction if message is not None else None, addresses),
        snippet=snippet or "",
        messages=row.visible_messages,
        attachments=row.with_attachments,
        labels=row.labels,
        assignees=row.assignees,
        status=status,
        snoozed=row.snoozed_until is not None and row.snoozed_until > now,
        answered=message is not None and message.direction == Direction.OUTBOUND,
    )


@dataclass
class ShownBlock:
    block: TextBlock
    folded: bool


@dataclass
class ShownMessage:
    message: Message
    addresses: dict[str, Any]
    blocks: list[ShownBlock]
    html: Any = None  # views_frame.HtmlBody for an HTML body: the frame URL and the images notice

    @property
    def sender_name(self) -> str:
        return next((_name(pair) for pair in self.addresses.get("from", []) if _name(pair)), "")

    @property
    def sender_address(self) -> str:
        pairs = [pair for pair in self.addresses.get("from", []) if isinstance(pair, list | tuple) and len(pair) == 2]
        return str(pairs[0][1]) if pairs else ""


def shown_message(message: Message) -> ShownMessage:
    """A message as the conversation page draws it: plain text cut into blocks, quotes and
    signatures folded (an HTML body goes into the sandboxed frame instead)."""
    blocks = [] if message.html_body else [ShownBlock(block, block.kind in _FOLDED) for block in text_blocks(message.text_body or "")]
    return ShownMessage(message=message, addresses=message.addresses or {}, blocks=blocks)


@dataclass
class EventLine:
    """One timeline event in words: ``actor`` did ``text`` (``target`` is a name to emphasise)."""

    event: TimelineEvent
    actor: str
    text: str
    target: str = ""
    after: str = ""
    icon: str = "info"
    until: datetime | None = None


def _member_name(names: dict[str, dict[Any, Any]], membership_id: Any) -> str:
    member = names["members"].get(membership_id)
    return member.user.display_name if member is not None else "a former member"


def event_line(event: TimelineEvent, names: dict[str, dict[Any, Any]]) -> EventLine:
    """``names`` is ``selectors.timeline_names`` of the events shown."""
    details = event.details or {}
    actor = event.actor.user.display_name if event.actor is not None else "Postroom"
    kind = event.kind
    if kind in ("assigned", "unassigned"):
        if event.actor_id is not None and event.actor_id == details.get("membership_id"):
            return EventLine(event, actor, f"{kind} themselves", icon="user-plus")
        target = _member_name(names, details.get("membership_id"))
        return EventLine(event, actor, kind, target, icon="user-plus")
    if kind in ("shared", "unshared"):
        verb = "shared this with" if kind == "shared" else "stopped sharing this with"
        if details.get("organization"):
            target = "the whole organization"
        elif "team_id" in details:
            team = names["teams"].get(details["team_id"])
            target = f"team {team.name}" if team is not None else "a deleted team"
        else:
            target = _member_name(names, details.get("membership_id"))
        return EventLine(event, actor, verb, target, icon="users")
    if kind in ("labelled", "unlabelled"):
        label = names["labels"].get(str(details.get("label_id")))
        verb = "added the label" if kind == "labelled" else "removed the label"
        return EventLine(event, actor, verb, label.name if label is not None else "(deleted label)", icon="tag")
    if kind == "closed":
        return EventLine(event, actor, "closed this conversation", icon="check")
    if kind == "reopened":
        if details.get("by") == "new_message":
            return EventLine(event, "A new message", "reopened this conversation", icon="inbox")
        return EventLine(event, actor, "reopened this conversation", icon="inbox")
    if kind == "restored":
        return EventLine(event, actor, "restored this conversation", icon="inbox")
    if kind == "trash":
        return EventLine(event, actor, "moved this to the trash", icon="trash")
    if kind == "spam":
        return EventLine(event, actor, "marked this as spam", icon="alert")
    if kind == "snoozed":
        until = _parse_time(details.get("until"))
        return EventLine(event, actor, "snoozed this until", icon="clock", until=until)
    if kind == "unsnoozed":
        return EventLine(event, actor, "woke this from its snooze", icon="clock")
    if kind == "snooze_ended":
        return EventLine(event, "Postroom", "ended the snooze of", _member_name(names, details.get("membership_id")), icon="clock")
    if kind == "rule_applied":
        return _rule_line(event, details, names)
    return EventLine(event, actor, kind.replace("_", " "))


def _rule_line(event: TimelineEvent, details: dict[str, Any], names: dict[str, dict[Any, Any]]) -> EventLine:
    """ "Rule Billing labelled this Billing, assigned Ada": what one run of a rule did."""
    name = str(details.get("rule_name") or "")
    if event.actor is not None:
        who = f"{event.actor.user.display_name}'s rule {name}".rstrip()
    else:
        who = f"Rule {name}".rstrip()
    done = [_rule_change(change, names) for change in details.get("changes", ()) if isinstance(change, dict)]
    return EventLine(event, who, ", ".join(part for part in done if part) or "ran", icon="settings")


def _rule_change(change: dict[str, Any], names: dict[str, dict[Any, Any]]) -> str:
    kind = change.get("kind")
    if kind == "assign":
        return f"assigned {_member_name(names, change.get('membership_id'))}"
    if kind in ("label", "unlabel"):
        label = names["labels"].get(str(change.get("label_id")))
        what = f"the label {label.name}" if label is not None else "a label"
        return f"added {what}" if kind == "label" else f"removed {what}"
    if kind in ("share_team", "move_to_team"):
        team = names["teams"].get(change.get("team_id"))
        team_name = f"team {team.name}" if team is not None else "a deleted team"
        return f"shared this with {team_name}" if kind == "share_team" else f"moved this to {team_name}'s inbox"
    if kind == "snooze":
        return f"snoozed this for {change.get('hours')} h"
    return {
        "close": "closed this",
        "archive": "archived this",
        "spam": "marked this as spam",
        "webhook": "called a webhook",
        "auto_reply": "sent an automatic reply",
        "comment": "commented",
    }.get(str(kind), "")


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass
class ThreadEntry:
    """A message or a timeline event, in the order they happened."""

    at: datetime
    message: ShownMessage | None = None
    event: EventLine | None = None
    tail: bool = field(default=False)


def _message_time(message: Message) -> datetime:
    return message.sent_at or message.created_at


def thread_entries(messages: list[Message], events: list[TimelineEvent], names: dict[str, dict[Any, Any]]) -> list[ThreadEntry]:
    """Messages and events interleaved by time. Events after the last message are marked
    ``tail``: they are what an action adds, and the page redraws only them."""
    entries = [ThreadEntry(at=_message_time(message), message=shown_message(message)) for message in messages]
    last_message_at = max((entry.at for entry in entries), default=None)
    for event in events:
        tail = last_message_at is None or event.created_at >= last_message_at
        entries.append(ThreadEntry(at=event.created_at, event=event_line(event, names), tail=tail))
    # Stable: a message and an event at the same instant keep the message first.
    entries.sort(key=lambda entry: (entry.tail, entry.at, entry.event is not None))
    return entries
