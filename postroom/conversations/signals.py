"""Events about conversations, sent after the change has been committed.

``conversation_event`` carries ids only (never content): ``conversation_id``,
``organization_id``, ``kind`` (``message_added``, ``assigned``, ``commented``, … see
``conversations.actions``), ``actor_id`` (the acting membership, or None for mail and rules)
and ``details`` (ids of the people, teams and labels concerned). Live updates and notifications
listen to it; each subscriber is authorised again when an event is delivered.

Kinds with details worth knowing: ``message_added`` (``message_ids``: the new messages that
reached the conversation's share, possibly none), ``assigned`` (``membership_id``),
``commented`` / ``comment_edited`` / ``comment_deleted`` (``comment_id``, see
``postroom.comments.actions``), and ``notification`` (``membership_id``, ``unread``: that
member's unread notification count changed; meant for that member only, and
``conversation_id`` is None when they marked all read; see ``postroom.notifications``).
"""

from __future__ import annotations

from django.dispatch import Signal

conversation_event = Signal()
