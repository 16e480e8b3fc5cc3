"""Running rules: on new mail (inside the ingest transaction, before anyone can see it) and after
a conversation is assigned or closed.

Threat model: a rule runs unattended, later, on behalf of someone whose rights may have changed,
and its actions raise events that could trigger rules again. Defences:

- Authorisation is checked again at every run (``definition.authorisation_problem``): a rule
  whose owner may no longer use what it names does nothing, is flagged with the reason, and the
  refusal is logged in its runs.
- A personal rule acts as its owner through the same actions a member uses
  (``conversations.actions``), which check again that the owner sees the conversation and may
  use the label. It runs only on its owner's own mail: messages arriving in the owner's own (not
  team) mailboxes, and conversations the owner sees through their own mailbox.
- An organization rule acts as the organization (``actor`` None on the timeline) on team
  mailboxes and team inboxes only; the system path below writes the same rows as the members'
  actions, limited to organization labels, teams and members of the same organization.
- Each rule's actions run in a savepoint: a failing action undoes that rule's changes only and
  never the message being stored.
- Loops: a rule's own assignments and closings trigger rules again at most ``MAX_DEPTH`` deep;
  webhooks are sent after the commit, by a task.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from postroom.contacts.cards import address_index
from postroom.contacts.models import ContactEmail
from postroom.conversations import access
from postroom.conversations import actions as conversation_actions
from postroom.conversations.bodies import messages_with_bodies
from postroom.conversations.models import (
    Assignment,
    Conversation,
    ConversationLabel,
    ConversationMember,
    ConversationShare,
    ConversationStatus,
    Label,
    Message,
    MessageCopy,
    Place,
)
from postroom.conversations.signals import conversation_event
from postroom.mailboxes.models import Mailbox
from postroom.orgs.models import Membership, Team
from postroom.rules.definition import Facts, authorisation_problem, conditions_hold, rule_books
from postroom.rules.models import Rule, RuleRun, RunOutcome, Trigger

logger = logging.getLogger(__name__)

MAX_DEPTH = 3
_state = threading.local()


def current_depth() -> int:
    """How deep in rule-caused events the current code runs (0: a member or mail did it)."""
    return int(getattr(_state, "depth", 0))


@contextmanager
def _events_at_depth(depth: int) -> Iterator[None]:
    """Events published (after the commit) by the actions inside this block are marked as caused
    by a rule at ``depth``: on-commit callbacks run in the order they were registered, so the
    callbacks registered here run between these two."""

    def enter() -> None:
        _state.depth = depth

    def leave() -> None:
        _state.depth = depth - 1

    transaction.on_commit(enter)
    try:
        yield
    finally:
        transaction.on_commit(leave)


# Facts ------------------------------------------------------------------------------------------


def _sender_books(message: Message | None, organization_id: int, owner: Membership | None) -> Callable[[], set[str]]:
    """The books (of those the rule may look in) that hold the sender's address, looked up once,
    by the address's blind index (contacts.cards.address_index), when a condition asks."""
    found: list[set[str]] = []

    def load() -> set[str]:
        if not found:
            senders = (message.addresses or {}).get("from", []) if message is not None else []
            address = str(([*list(senders[0]), "", ""])[1]) if senders else ""
            books: set[str] = set()
            if address:
                index = address_index(organization_id, address)
                holding = ContactEmail.objects.filter(organization_id=organization_id, address_index=index).values("book_id")
                books = {str(pk) for pk in rule_books(organization_id=organization_id, owner=owner).filter(pk__in=holding).values_list("pk", flat=True)}
            found.append(books)
        return found[0]

    return load


def _facts(message: Message | None, conversation: Conversation, mailbox_ids: Iterable[Any], owner: Membership | None = None) -> Facts:
    team_ids = set(ConversationShare.objects.filter(conversation=conversation, team__isnull=False).values_list("team_id", flat=True))
    mailbox_ids = {str(mailbox_id) for mailbox_id in mailbox_ids}
    team_ids |= set(Mailbox.objects.filter(pk__in=mailbox_ids, team__isnull=False).values_list("team_id", flat=True))
    facts = Facts(
        mailbox_ids=mailbox_ids,
        team_ids=team_ids,
        label_ids={
            str(label_id) for label_id in ConversationLabel.objects.filter(conversation=conversation).values_list("label_id", flat=True)
        },
        now=timezone.now(),
        sender_books=_sender_books(message, conversation.organization_id, owner),
    )
    if message is not None:
        if message.body_pending:
            # A rule reads this message now, before the import's body pass reached it: its text and
            # attachments are parsed here, once (conversations.bodies), once its raw blob is written.
            from postroom.conversations.ingest import raw_blobs_ready

            raw_blobs_ready()
            [message] = messages_with_bodies([message])
        facts.addresses = message.addresses or {}
        facts.subject = message.subject or ""
        facts.body = message.text_body or ""
        facts.has_attachments = message.has_attachments
    return facts


class _LazyFacts:
    """Decrypt a message once, and only when a rule of the batch needs it."""

    def __init__(self, message: Message | None, conversation: Conversation, mailbox_ids: Iterable[Any], owner: Membership | None) -> None:
        self.args = (message, conversation, set(mailbox_ids), owner)
        self.value: Facts | None = None

    def get(self) -> Facts:
        if self.value is None:
            self.value = _facts(*self.args)
        return self.value


# Running ----------------------------------------------------------------------------------------


def rules_run(*, rules: list[Rule], conversation: Conversation, message: Message | None, trigger: str,
              mailbox_ids: Iterable[Any], depth: int = 1) -> int:  # fmt: skip
    """Run ``rules`` (one owner's list, in its order) on a conversation; the number applied."""
    mailbox_ids = list(mailbox_ids)
    # One owner's list: the same owner (or none, for the organization's) for every rule.
    facts = _LazyFacts(message, conversation, mailbox_ids, rules[0].owner if rules else None)
    applied = 0
    for rule in rules:
        if not conditions_hold(rule.definition or {}, rule.match, facts.get()):
            continue
        problem = authorisation_problem(
            organization_id=rule.organization_id, owner=rule.owner, editor=rule.updated_by, definition=rule.definition or {}
        )
        if problem:
            _refuse(rule, conversation, message, trigger, problem)
        else:
            try:
                with transaction.atomic(), _events_at_depth(depth):
                    changes = _apply(rule, conversation, trigger, message, mailbox_ids)
                    if changes:
                        RuleRun.objects.create(rule=rule, conversation=conversation, message=message, trigger=trigger,
                                               outcome=RunOutcome.APPLIED, changes=changes)  # fmt: skip
                        conversation_actions.timeline_record(
                            conversation=conversation, actor=rule.owner, kind="rule_applied", rule_id=str(rule.pk), rule_name=rule.name,
                            changes=changes,
                        )
                        applied += 1
            except (Http404, PermissionDenied, ValidationError):
                # The owner's own actions refused it (they cannot see the conversation any more,
                # or the label is not theirs): nothing of this rule stays.
                _refuse(rule, conversation, message, trigger, "The rule's owner may no longer do this to the conversation.")
        if rule.stop_processing:
            break
    return applied


def _refuse(rule: Rule, conversation: Conversation, message: Message | None, trigger: str, reason: str) -> None:
    now = timezone.now()
    Rule.objects.filter(pk=rule.pk).update(flagged_reason=reason[:200], flagged_at=now)
    rule.flagged_reason, rule.flagged_at = reason[:200], now
    RuleRun.objects.create(rule=rule, conversation=conversation, message=message, trigger=trigger, outcome=RunOutcome.REFUSED,
                           reason=reason[:200])  # fmt: skip


def _apply(rule: Rule, conversation: Conversation, trigger: str, message: Message | None, mailbox_ids: list[Any]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for action in (rule.definition or {}).get("actions", []):
        if action["kind"] in ("auto_reply", "comment"):
            change = _common_action(rule, conversation, action, trigger, message, mailbox_ids)
        elif rule.owner is not None:
            change = _personal_action(rule, conversation, action)
        else:
            change = _organization_action(rule, conversation, action, trigger)
        if change is not None:
            changes.append(change)
    return changes


def _common_action(rule: Rule, conversation: Conversation, action: dict[str, Any], trigger: str, message: Message | None,
                   mailbox_ids: list[Any]) -> dict[str, Any] | None:  # fmt: skip
    """The actions personal and organization rules do the same way."""
    if action["kind"] == "auto_reply":
        if trigger != Trigger.INCOMING:
            return None
        from postroom.rules.autoreply import auto_reply_send

        outgoing = auto_reply_send(rule=rule, conversation=conversation, message=message, mailbox_ids=mailbox_ids,
                                   response_id=action["response_id"])  # fmt: skip
        return {"kind": "auto_reply", "outgoing_id": str(outgoing.pk)} if outgoing is not None else None
    from postroom.comments.actions import comment_by_rule

    comment = comment_by_rule(rule=rule, conversation=conversation, body=action["text"])
    return {"kind": "comment", "comment_id": str(comment.pk)}


def _personal_action(rule: Rule, conversation: Conversation, action: dict[str, Any]) -> dict[str, Any] | None:
    """As the owner, through the members' actions (each checks the owner's rights again)."""
    actor = rule.owner
    if actor is None:
        return None
    kind = action["kind"]
    if kind == "assign":
        assignee = Membership.objects.get(pk=action["membership_id"], organization_id=rule.organization_id)
        done = conversation_actions.conversation_assign(actor=actor, conversation=conversation, assignee=assignee)
        return {"kind": kind, "membership_id": assignee.pk} if done else None
    if kind in ("label", "unlabel"):
        label = Label.objects.get(pk=action["label_id"], organization_id=rule.organization_id)
        change = conversation_actions.conversation_label if kind == "label" else conversation_actions.conversation_unlabel
        done = change(actor=actor, conversation=conversation, label=label)
        # A personal label is the owner's business: the timeline names only organization labels.
        return ({"kind": kind, "label_id": str(label.pk)} if label.owner_id is None else {"kind": kind}) if done else None
    if kind in ("share_team", "move_to_team"):
        team = Team.objects.get(pk=action["team_id"], organization_id=rule.organization_id)
        done = conversation_actions.conversation_share(actor=actor, conversation=conversation, team=team)
        if kind == "move_to_team":
            others = Team.objects.filter(conversation_shares__conversation=conversation).exclude(pk=team.pk)
            for other in others:
                done = conversation_actions.conversation_unshare(actor=actor, conversation=conversation, team=other) or done
        return {"kind": kind, "team_id": team.pk} if done else None
    if kind == "close":
        status_before = conversation.status
        conversation_actions.conversation_close(actor=actor, conversation=conversation)
        return (
            {"kind": kind} if Conversation.objects.get(pk=conversation.pk).status != status_before or not conversation.is_shared else None
        )
    if kind == "archive":
        conversation_actions.conversation_archive(actor=actor, conversation=conversation)
        return {"kind": kind}
    if kind == "snooze":
        until = timezone.now() + timedelta(hours=action["hours"])
        conversation_actions.conversation_snooze(actor=actor, conversation=conversation, until=until)
        return {"kind": kind, "hours": action["hours"]}
    if kind == "spam":
        conversation_actions.conversation_mark_spam(actor=actor, conversation=conversation)
        return {"kind": kind}
    return None  # webhooks are organization rules' only


def _publish(conversation: Conversation, kind: str, rule: Rule, **details: Any) -> None:
    conversation_id, organization_id = conversation.pk, conversation.organization_id
    transaction.on_commit(
        lambda: conversation_event.send(sender=Conversation, conversation_id=conversation_id, organization_id=organization_id,
                                        kind=kind, actor_id=None, details={**details, "rule_id": str(rule.pk)})
    )  # fmt: skip


def _set_status(conversation: Conversation, status: str) -> bool:
    changed = Conversation.objects.filter(pk=conversation.pk).exclude(status=status).update(status=status, status_changed_at=timezone.now())
    if changed:
        conversation.status = status
    return bool(changed)


def _team_share(conversation: Conversation, team: Team) -> bool:
    _share, created = ConversationShare.objects.get_or_create(conversation=conversation, team=team)
    if created:
        Conversation.objects.filter(pk=conversation.pk, is_shared=False).update(is_shared=True)
        access.access_refresh([conversation.pk])
    return created


def _organization_action(rule: Rule, conversation: Conversation, action: dict[str, Any], trigger: str) -> dict[str, Any] | None:
    """As the organization, on a conversation in a team inbox: the same rows the members' actions
    write, with no member as the actor."""
    kind = action["kind"]
    organization_id = rule.organization_id
    if kind == "assign":
        assignee = Membership.objects.get(pk=action["membership_id"], organization_id=organization_id)
        _assignment, created = Assignment.objects.get_or_create(conversation=conversation, membership=assignee)
        if not created:
            return None
        if not ConversationMember.objects.filter(conversation=conversation, membership=assignee, via_share=True).exists():
            ConversationShare.objects.get_or_create(conversation=conversation, membership=assignee)
            access.access_refresh([conversation.pk])
        ConversationMember.objects.filter(conversation=conversation, membership=assignee).update(
            place=Place.INBOX, following=True, snoozed_until=None, unread=True
        )
        if conversation.status == ConversationStatus.CLOSED:
            _set_status(conversation, ConversationStatus.OPEN)
        _publish(conversation, "assigned", rule, membership_id=assignee.pk)
        return {"kind": kind, "membership_id": assignee.pk}
    if kind in ("label", "unlabel"):
        label = Label.objects.get(pk=action["label_id"], organization_id=organization_id, owner__isnull=True)
        if kind == "label":
            done = ConversationLabel.objects.get_or_create(conversation=conversation, label=label)[1]
        else:
            done = bool(ConversationLabel.objects.filter(conversation=conversation, label=label).delete()[0])
        if done:
            _publish(conversation, "labelled" if kind == "label" else "unlabelled", rule, label_id=str(label.pk))
        return {"kind": kind, "label_id": str(label.pk)} if done else None
    if kind in ("share_team", "move_to_team"):
        team = Team.objects.get(pk=action["team_id"], organization_id=organization_id)
        done = _team_share(conversation, team)
        if kind == "move_to_team":
            removed, _ = ConversationShare.objects.filter(conversation=conversation, team__isnull=False).exclude(team=team).delete()
            if removed:
                access.access_refresh([conversation.pk])
            done = done or bool(removed)
        if done:
            _publish(conversation, "shared", rule, team_id=team.pk)
        return {"kind": kind, "team_id": team.pk} if done else None
    if kind == "close":
        if not _set_status(conversation, ConversationStatus.CLOSED):
            return None
        ConversationMember.objects.filter(conversation=conversation, place=Place.INBOX).update(place=Place.ARCHIVE)
        _publish(conversation, "closed", rule)
        return {"kind": kind}
    if kind == "spam":
        if not _set_status(conversation, ConversationStatus.SPAM):
            return None
        ConversationMember.objects.filter(conversation=conversation, via_share=True).update(place=Place.SPAM, snoozed_until=None)
        _publish(conversation, "spam", rule)
        return {"kind": kind}
    if kind == "webhook":
        from postroom.rules.webhooks import webhook_queue

        delivery = webhook_queue(rule=rule, conversation=conversation, trigger=trigger)
        return {"kind": kind, "delivery_id": str(delivery.pk)}
    return None


# Entry points -----------------------------------------------------------------------------------


def _enabled_rules(organization_id: int, triggers: set[str]) -> dict[tuple[str, int | None], list[Rule]]:
    """The organization's enabled rules for these triggers, by (trigger, owner), in order: one
    indexed query (rule_org_trigger), empty for the many organizations without rules."""
    grouped: dict[tuple[str, int | None], list[Rule]] = defaultdict(list)
    rules = Rule.objects.filter(organization_id=organization_id, trigger__in=triggers, enabled=True)
    for rule in rules.select_related("owner", "updated_by").order_by("position", "created_at"):
        grouped[(rule.trigger, rule.owner_id)].append(rule)
    return grouped


def _run(grouped: dict[tuple[str, int | None], list[Rule]], key: tuple[str, int | None], *, conversation: Conversation,
         message: Message | None, mailbox_ids: Iterable[Any], depth: int) -> None:  # fmt: skip
    rules = grouped.get(key, [])
    if rules:
        rules_run(rules=rules, conversation=conversation, message=message, trigger=key[0], mailbox_ids=mailbox_ids, depth=depth)


def messages_arrived(*, organization_id: int, messages: list[Message], copies: list[MessageCopy], mailboxes: dict[Any, Mailbox]) -> None:
    """New messages were stored (inside the ingest transaction): run the incoming and outgoing
    rules. Organization rules run first (on messages of team mailboxes and team inboxes), then
    each owner's personal rules (on messages of their own mailboxes)."""
    if not messages:
        return
    grouped = _enabled_rules(organization_id, {Trigger.INCOMING, Trigger.OUTGOING})
    if not grouped:
        return
    conversations = Conversation.objects.in_bulk({message.conversation_id for message in messages})
    for message in messages:
        trigger = Trigger.OUTGOING if message.direction == "outbound" else Trigger.INCOMING
        conversation = conversations[message.conversation_id]
        holders = [mailboxes[copy.mailbox_id] for copy in copies if copy.message_id == message.pk]
        full = Message.objects.get(pk=message.pk)  # every field, for the conditions (decrypted lazily)
        # Organization rules see only what the team sees: a message of a team mailbox, or one
        # that joined a team-shared conversation's share. A member's private reply that threading
        # put into a team conversation stays private (conversations.access), rules included.
        if (
            (trigger, None) in grouped
            and message.shared
            and (
                any(mailbox.team_id is not None for mailbox in holders)
                or ConversationShare.objects.filter(conversation=conversation, team__isnull=False).exists()
            )
        ):
            team_mailboxes = [mailbox.pk for mailbox in holders if mailbox.team_id is not None]
            _run(grouped, (trigger, None), conversation=conversation, message=full, mailbox_ids=team_mailboxes, depth=1)
        for owner_id in sorted({mailbox.owner_id for mailbox in holders if mailbox.team_id is None}):
            own = [mailbox.pk for mailbox in holders if mailbox.owner_id == owner_id and mailbox.team_id is None]
            _run(grouped, (trigger, owner_id), conversation=conversation, message=full, mailbox_ids=own, depth=1)


def conversation_changed(*, conversation_id: Any, organization_id: int, kind: str, depth: int) -> None:
    """A conversation was assigned or closed (after the commit): run those rules."""
    if depth > MAX_DEPTH:
        logger.info("rules: %s of conversation %s not run (rules triggered rules %d deep)", kind, conversation_id, MAX_DEPTH)
        return
    grouped = _enabled_rules(organization_id, {kind})
    if not grouped:
        return
    with transaction.atomic():
        conversation = Conversation.objects.filter(pk=conversation_id, organization_id=organization_id).first()
        if conversation is None:
            return
        if (kind, None) in grouped and ConversationShare.objects.filter(conversation=conversation, team__isnull=False).exists():
            message = Message.objects.filter(conversation=conversation, shared=True).order_by("-sent_at", "-created_at").first()
            team_mailboxes = (
                MessageCopy.objects.filter(message=message, mailbox__team__isnull=False, gone_at__isnull=True).values_list(
                    "mailbox_id", flat=True
                )
                if message
                else []
            )
            _run(grouped, (kind, None), conversation=conversation, message=message, mailbox_ids=list(team_mailboxes), depth=depth)
        owners = ConversationMember.objects.filter(conversation=conversation, via_mailbox=True).values_list("membership_id", flat=True)
        for owner_id in sorted(owner for owner in owners if (kind, owner) in grouped):
            own_copies = MessageCopy.objects.filter(message__conversation=conversation, mailbox__owner_id=owner_id, mailbox__team__isnull=True,
                                                    gone_at__isnull=True)  # fmt: skip
            latest = own_copies.order_by("-message__sent_at", "-message__created_at").select_related("message").first()
            if latest is None:
                continue
            mailbox_ids = list(own_copies.filter(message=latest.message).values_list("mailbox_id", flat=True))
            _run(grouped, (kind, owner_id), conversation=conversation, message=latest.message, mailbox_ids=mailbox_ids, depth=depth)


def rule_preview(*, rule: Rule, conversations: Iterable[Conversation], viewer: Membership) -> list[Conversation]:
    """Which of ``conversations`` the rule's conditions match now, changing nothing; the message
    looked at is the latest one the viewer can see."""
    from postroom.conversations.selectors import messages_visible

    matched = []
    for conversation in conversations:
        message = messages_visible(actor=viewer).filter(conversation=conversation).order_by("-sent_at", "-created_at").first()
        copies = MessageCopy.objects.filter(message=message, gone_at__isnull=True)
        copies = copies.filter(mailbox__team__isnull=False) if rule.owner_id is None else copies.filter(mailbox__owner_id=rule.owner_id)
        mailbox_ids = list(copies.values_list("mailbox_id", flat=True)) if message else []
        if conditions_hold(rule.definition or {}, rule.match, _facts(message, conversation, mailbox_ids, rule.owner)):
            matched.append(conversation)
    return matched
