"""Carrying a conversation's team state over when threading merges it into another.

A late message can prove that two conversations are one thread (``conversations.threading``).
The merged-away conversation's shares, assignments, labels, timeline, comments and outgoing
mail move to the surviving one, so nothing a team did is lost and nobody loses access they had;
who can see the result is recomputed by ``conversations.access`` afterwards.
"""

from __future__ import annotations

from django.db import models

from postroom.conversations.models import Conversation, ConversationMember, Message

# Recomputed (ConversationMember) or moved by the caller (Message).
_NOT_CARRIED = (ConversationMember, Message)


def conversation_state_carry(*, source: Conversation, target: Conversation) -> None:
    """Point every row that belongs to ``source`` at ``target`` (inside the caller's transaction)."""
    if source.shared_with_organization and not target.shared_with_organization:
        Conversation.objects.filter(pk=target.pk).update(shared_with_organization=True, is_shared=True)
    for relation in Conversation._meta.related_objects:
        model = relation.related_model
        if not isinstance(relation, models.ManyToOneRel) or isinstance(model, str) or model in _NOT_CARRIED:
            continue
        field = relation.field.name
        rows = model._default_manager.filter(**{field: source})
        # A row the target already has (the same team share, assignee or label) is dropped
        # rather than duplicated.
        for constraint in model._meta.constraints:
            if isinstance(constraint, models.UniqueConstraint) and field in constraint.fields:
                others = [name for name in constraint.fields if name != field]
                taken = model._default_manager.filter(**{field: target}).values_list(*others)
                for values in list(taken):
                    rows.filter(**dict(zip(others, values, strict=True))).delete()
        rows.update(**{field: target})
