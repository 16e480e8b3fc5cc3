"""Events about conversations, sent after the change has been committed.

``conversation_event`` carries ids only (never content): ``conversation_id``,
``organization_id``, ``kind`` (``message_added``, ``assigned``, ``commented``, … see
``conversations.actions``), ``actor_id`` (the acting membership, or None for mail and rules)
and ``details`` (ids of the people, teams and labels concerned). Live updates and notifications
listen to it; each subscriber is authorised again when an event is delivered.
"""

from __future__ import annotations

from django.dispatch import Signal

conversation_event = Signal()
