"""Rules on real ingest: organization rules on a team mailbox, personal rules on a member's own
mail, order and "stop processing", the authorisation re-check, loops, preview (R38)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from postroom.conversations import actions as conversation_actions
from postroom.conversations.display import event_line
from postroom.conversations.models import (
    Assignment,
    Conversation,
    ConversationLabel,
    ConversationStatus,
    Label,
    TimelineEvent,
)
from postroom.conversations.selectors import timeline_names
from postroom.orgs.models import Membership, TeamMembership
from postroom.orgs.policy import Role
from postroom.rules import actions
from postroom.rules.models import Rule, RuleRun, RunOutcome
from postroom.rules.tests.conftest import Place

pytestmark = pytest.mark.django_db

FROM_DANA = [{"field": "from", "op": "glob", "value": "*@customer.example"}]


def labels_of(conversation: Conversation) -> set[str]:
    return set(ConversationLabel.objects.filter(conversation=conversation).values_list("label__name", flat=True))


def assignees_of(conversation: Conversation) -> set[int]:
    return set(Assignment.objects.filter(conversation=conversation).values_list("membership_id", flat=True))


def test_an_organization_rule_labels_and_assigns_mail_from_a_sender_on_a_team_mailbox(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    rule = make_rule(cast.carol_membership, organization=True, name="Billing mail", conditions=FROM_DANA, actions_=[
        {"kind": "label", "label_id": str(place.billing.pk)}, {"kind": "assign", "membership_id": cast.bob_membership.pk},
    ])  # fmt: skip
    message = place.deliver(place.support_mailbox, to="support@acme.test")
    other = place.deliver(place.support_mailbox, to="support@acme.test", sender="Eve <eve@elsewhere.example>")

    conversation = message.conversation
    assert labels_of(conversation) == {"Billing"}
    assert assignees_of(conversation) == {cast.bob_membership.pk}
    assert labels_of(other.conversation) == set()
    assert assignees_of(other.conversation) == set()
    [event] = TimelineEvent.objects.filter(conversation=conversation, kind="rule_applied")
    assert event.actor is None  # the organization did it
    assert event.details == {"rule_id": str(rule.pk), "rule_name": "Billing mail", "changes": [
        {"kind": "label", "label_id": str(place.billing.pk)}, {"kind": "assign", "membership_id": cast.bob_membership.pk},
    ]}  # fmt: skip
    assert "customer" not in str(event.details)  # ids only
    # The timeline says in words what the rule did.
    line = event_line(event, timeline_names(actor=cast.bob_membership, events=[event]))
    assert (line.actor, line.text) == ("Rule Billing mail", f"added the label Billing, assigned {cast.bob.display_name}")
    [run] = RuleRun.objects.filter(rule=rule)
    assert run.outcome == RunOutcome.APPLIED
    assert run.message_id == message.pk


def test_organization_rules_leave_personal_mailboxes_alone(place: Place, make_rule: Callable[..., Rule]) -> None:
    make_rule(
        place.cast.carol_membership,
        organization=True,
        conditions=FROM_DANA,
        actions_=[{"kind": "label", "label_id": str(place.billing.pk)}],
    )
    message = place.deliver(place.alice_mailbox)
    assert labels_of(message.conversation) == set()


def test_a_personal_rule_applies_only_to_its_owners_own_mail(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    mine = Label.objects.create(organization=cast.org_a, owner=cast.bob_membership, name="From customers")
    make_rule(cast.bob_membership, conditions=FROM_DANA, actions_=[{"kind": "label", "label_id": str(mine.pk)}])
    to_bob = place.deliver(place.bob_mailbox, to="bob@acme.test")
    to_alice = place.deliver(place.alice_mailbox)
    to_team = place.deliver(place.support_mailbox, to="support@acme.test")
    assert labels_of(to_bob.conversation) == {"From customers"}
    assert labels_of(to_alice.conversation) == set()
    assert labels_of(to_team.conversation) == set()
    # A personal label is the owner's business: the timeline entry does not name it.
    event = TimelineEvent.objects.get(conversation=to_bob.conversation, kind="rule_applied")
    assert event.actor == cast.bob_membership
    assert event.details["changes"] == [{"kind": "label"}]


def test_rules_run_in_order_and_stop_processing_stops_the_rest(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    urgent = Label.objects.create(organization=cast.org_a, name="Urgent")
    first = make_rule(cast.carol_membership, organization=True, name="first", conditions=FROM_DANA,
                      actions_=[{"kind": "label", "label_id": str(urgent.pk)}], stop_processing=True)  # fmt: skip
    second = make_rule(
        cast.carol_membership, organization=True, name="second", actions_=[{"kind": "label", "label_id": str(place.billing.pk)}]
    )
    message = place.deliver(place.support_mailbox, to="support@acme.test")
    assert labels_of(message.conversation) == {"Urgent"}

    # Reordered: the second runs first and does not stop; the first still runs after it.
    actions.rules_reorder(actor=cast.carol_membership, organization=True, rule_ids=[second.pk, first.pk])
    again = place.deliver(place.support_mailbox, to="support@acme.test", subject="Another one")
    assert labels_of(again.conversation) == {"Urgent", "Billing"}
    assert list(
        TimelineEvent.objects.filter(conversation=again.conversation, kind="rule_applied").values_list("details__rule_id", flat=True)
    ) == [str(second.pk), str(first.pk)]


def test_conditions_any_and_all(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    conditions = [{"field": "subject", "op": "contains", "value": "invoice"}, {"field": "has_attachment", "value": True}]
    make_rule(
        cast.carol_membership,
        organization=True,
        match="all",
        conditions=conditions,
        actions_=[{"kind": "label", "label_id": str(place.billing.pk)}],
    )
    only_subject = place.deliver(place.support_mailbox, subject="Your INVOICE")
    both = place.deliver(place.support_mailbox, subject="Invoice 7", attachments=(("a.pdf", "application/pdf", b"%PDF"),))
    assert labels_of(only_subject.conversation) == set()
    assert labels_of(both.conversation) == {"Billing"}


def test_r38_a_catastrophic_regex_runs_in_linear_time_and_lookarounds_are_refused(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    make_rule(cast.carol_membership, organization=True, conditions=[{"field": "subject", "op": "regex", "value": "(a+)+$"}],
              actions_=[{"kind": "label", "label_id": str(place.billing.pk)}])  # fmt: skip
    message = place.deliver(place.support_mailbox, subject="a" * 5000 + "!")  # would take ages with backtracking
    assert labels_of(message.conversation) == set()
    with pytest.raises(ValidationError, match="RE2"):
        make_rule(cast.carol_membership, organization=True, conditions=[{"field": "subject", "op": "regex", "value": "(?=x)"}])


def test_r38_a_personal_rule_whose_owner_left_the_team_does_nothing_and_is_flagged(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    rule = make_rule(cast.bob_membership, conditions=FROM_DANA, actions_=[{"kind": "share_team", "team_id": place.support.pk}])
    TeamMembership.objects.filter(team=place.support, membership=cast.bob_membership).delete()
    message = place.deliver(place.bob_mailbox, to="bob@acme.test")
    assert not message.conversation.shares.exists()
    rule.refresh_from_db()
    assert "left it" in rule.flagged_reason
    assert RuleRun.objects.get(rule=rule).outcome == RunOutcome.REFUSED
    assert not TimelineEvent.objects.filter(conversation=message.conversation, kind="rule_applied").exists()


def test_r38_an_organization_rule_stops_when_its_editor_is_no_longer_admin(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    rule = make_rule(cast.carol_membership, organization=True, actions_=[{"kind": "label", "label_id": str(place.billing.pk)}])
    Membership.objects.filter(pk=cast.carol_membership.pk).update(role=Role.MEMBER)
    message = place.deliver(place.support_mailbox)
    assert labels_of(message.conversation) == set()
    rule.refresh_from_db()
    assert "no longer an admin" in rule.flagged_reason
    # Another admin reviews and saves it: it runs again, under them.
    actions.rule_update(actor=cast.alice_membership, rule=rule, name="Reviewed")
    rule.refresh_from_db()
    assert rule.flagged_reason == ""
    assert rule.updated_by == cast.alice_membership
    again = place.deliver(place.support_mailbox, subject="Second")
    assert labels_of(again.conversation) == {"Billing"}


def test_a_rule_cannot_name_another_organizations_objects_or_what_its_owner_may_not_use(
    place: Place, make_rule: Callable[..., Rule]
) -> None:
    cast = place.cast
    foreign_label = Label.objects.create(organization=cast.org_b, name="Theirs")
    with pytest.raises(ValidationError):
        make_rule(cast.carol_membership, organization=True, actions_=[{"kind": "label", "label_id": str(foreign_label.pk)}])
    with pytest.raises(ValidationError):
        make_rule(cast.carol_membership, organization=True, actions_=[{"kind": "assign", "membership_id": cast.charlie_membership.pk}])
    with pytest.raises(ValidationError):  # Alice is not in Support
        make_rule(cast.alice_membership, actions_=[{"kind": "share_team", "team_id": place.support.pk}])
    with pytest.raises(ValidationError):  # Bob's mailbox is not Alice's
        make_rule(cast.alice_membership, conditions=[{"field": "mailbox", "value": str(place.bob_mailbox.pk)}])
    with pytest.raises(PermissionDenied):
        make_rule(cast.bob_membership, organization=True)
    with pytest.raises(ValidationError, match="webhook"):
        make_rule(cast.bob_membership, actions_=[{"kind": "webhook", "url": "https://hooks.example/x"}])


def test_r38_assigned_trigger_runs_after_a_member_assigns_and_rule_loops_are_capped(
    place: Place, make_rule: Callable[..., Rule], django_capture_on_commit_callbacks: Any
) -> None:
    cast = place.cast
    message = place.deliver(place.support_mailbox)
    conversation = message.conversation
    # Two rules that would feed each other forever: assigned → assign someone else → assigned ...
    make_rule(cast.carol_membership, organization=True, trigger="assigned", name="to alice",
              actions_=[{"kind": "assign", "membership_id": cast.alice_membership.pk}, {"kind": "label", "label_id": str(place.billing.pk)}])  # fmt: skip
    make_rule(cast.carol_membership, organization=True, trigger="assigned", name="to carol",
              actions_=[{"kind": "assign", "membership_id": cast.carol_membership.pk}])  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        conversation_actions.conversation_assign(actor=cast.bob_membership, conversation=conversation, assignee=cast.bob_membership)
    assert labels_of(conversation) == {"Billing"}
    assert assignees_of(conversation) == {cast.bob_membership.pk, cast.alice_membership.pk, cast.carol_membership.pk}
    # Nothing left to change, so the chain ends; and it never goes deeper than MAX_DEPTH.
    assert RuleRun.objects.filter(outcome=RunOutcome.APPLIED).count() <= 3


def test_closed_trigger(place: Place, make_rule: Callable[..., Rule], django_capture_on_commit_callbacks: Any) -> None:
    cast = place.cast
    message = place.deliver(place.support_mailbox)
    make_rule(cast.carol_membership, organization=True, trigger="closed", actions_=[{"kind": "label", "label_id": str(place.billing.pk)}])
    with django_capture_on_commit_callbacks(execute=True):
        conversation_actions.conversation_close(actor=cast.bob_membership, conversation=message.conversation)
    assert labels_of(message.conversation) == {"Billing"}


def test_organization_close_and_move_to_team(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    from postroom.orgs.models import Team

    sales = Team.objects.create(organization=cast.org_a, name="Sales")
    make_rule(cast.carol_membership, organization=True, actions_=[{"kind": "move_to_team", "team_id": sales.pk}, {"kind": "close"}])
    message = place.deliver(place.support_mailbox)
    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert set(conversation.shares.values_list("team__name", flat=True)) == {"Sales"}
    assert conversation.status == ConversationStatus.CLOSED


def test_preview_shows_matches_among_visible_conversations_and_changes_nothing(place: Place, make_rule: Callable[..., Rule]) -> None:
    cast = place.cast
    dana = place.deliver(place.bob_mailbox, to="bob@acme.test")
    eve = place.deliver(place.bob_mailbox, to="bob@acme.test", sender="eve@elsewhere.example", subject="Hi")
    alices = place.deliver(place.alice_mailbox, subject="Alice's")
    rule = make_rule(cast.bob_membership, conditions=FROM_DANA, actions_=[{"kind": "close"}], enabled=False)
    before = (TimelineEvent.objects.count(), RuleRun.objects.count(), Conversation.objects.filter(status=ConversationStatus.CLOSED).count())
    matched = actions.rule_preview(actor=cast.bob_membership, rule=rule)
    assert [conversation.pk for conversation in matched] == [dana.conversation_id]
    assert eve.conversation_id not in {c.pk for c in matched}
    assert alices.conversation_id not in {c.pk for c in matched}
    assert before == (
        TimelineEvent.objects.count(),
        RuleRun.objects.count(),
        Conversation.objects.filter(status=ConversationStatus.CLOSED).count(),
    )


def test_conditions_and_actions_are_sealed(place: Place, make_rule: Callable[..., Rule]) -> None:
    rule = make_rule(place.cast.carol_membership, organization=True, conditions=FROM_DANA)
    stored = bytes(Rule.objects.filter(pk=rule.pk).values_list("definition_sealed", flat=True).get())
    assert b"customer.example" not in stored
    assert (Rule.objects.get(pk=rule.pk).definition or {}).get("conditions") == FROM_DANA


def test_r38_rules_triggered_by_rules_stop_at_the_depth_cap(place: Place, make_rule: Callable[..., Rule]) -> None:
    from postroom.rules import engine

    cast = place.cast
    message = place.deliver(place.support_mailbox)
    make_rule(cast.carol_membership, organization=True, trigger="closed", actions_=[{"kind": "label", "label_id": str(place.billing.pk)}])
    conversation = message.conversation
    engine.conversation_changed(conversation_id=conversation.pk, organization_id=cast.org_a.pk, kind="closed", depth=engine.MAX_DEPTH + 1)
    assert labels_of(conversation) == set()
    engine.conversation_changed(conversation_id=conversation.pk, organization_id=cast.org_a.pk, kind="closed", depth=engine.MAX_DEPTH)
    assert labels_of(conversation) == {"Billing"}


def test_organization_rules_do_not_read_a_private_message_threaded_into_a_team_conversation(
    place: Place, make_rule: Callable[..., Rule]
) -> None:
    cast = place.cast
    first = place.deliver(place.support_mailbox, subject="Order 77", message_id="<order77@customer.example>")
    make_rule(cast.carol_membership, organization=True, conditions=[{"field": "body", "op": "contains", "value": "private words"}],
              actions_=[{"kind": "label", "label_id": str(place.billing.pk)}])  # fmt: skip
    # Alice is not in Support: her copy of a reply stays private to her, and the rule must not see it.
    reply = place.deliver(place.alice_mailbox, subject="Re: Order 77", in_reply_to="<order77@customer.example>", text="private words\n")
    assert reply.conversation_id == first.conversation_id
    assert labels_of(first.conversation) == set()
