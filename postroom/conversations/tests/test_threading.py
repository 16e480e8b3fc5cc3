"""Threading: reply chains, replies stored before their parent, the subject fallback."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Conversation, Message
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.conversations.threading import normalised_subject
from postroom.mailboxes.models import Mailbox

pytestmark = pytest.mark.django_db

MONDAY = datetime(2026, 3, 2, 9, 0).astimezone()


def ingest(mailbox: Mailbox, uid: int, raw: bytes, when: datetime = MONDAY) -> Message:
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=7, uid=uid, raw=raw, internal_date=when).message


def reply(number: int, parent_chain: list[str], **options: object) -> bytes:
    fields: dict[str, object] = {
        "subject": "Re: Order 1234 never arrived",
        "message_id": f"<reply{number}@example.test>",
        "in_reply_to": parent_chain[-1],
        "references": " ".join(parent_chain),
        "text": f"Reply number {number}\n",
    }
    return build_raw(**(fields | options))  # type: ignore[arg-type]


def test_a_reply_chain_is_one_conversation(alice_mailbox: Mailbox) -> None:
    first = ingest(alice_mailbox, 1, build_raw())
    second = ingest(alice_mailbox, 2, reply(1, ["<first@customer.example>"]), MONDAY + timedelta(hours=1))
    third = ingest(alice_mailbox, 3, reply(2, ["<first@customer.example>", "<reply1@example.test>"]), MONDAY + timedelta(hours=2))
    assert first.conversation_id == second.conversation_id == third.conversation_id
    conversation = Conversation.objects.get()
    assert conversation.message_count == 3
    assert conversation.last_message_at == MONDAY + timedelta(hours=2)
    assert conversation.subject == "Order 1234 never arrived"


def test_references_thread_even_with_another_subject(alice_mailbox: Mailbox) -> None:
    first = ingest(alice_mailbox, 1, build_raw())
    renamed = ingest(alice_mailbox, 2, reply(1, ["<first@customer.example>"], subject="Something else now"))
    assert renamed.conversation_id == first.conversation_id


def test_replies_stored_before_their_parent_are_joined_and_merged(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    # Newest first: the second reply only references the first reply, which is not stored yet.
    second_reply = ingest(alice_mailbox, 3, build_raw(
        subject="Re: Order", message_id="<reply2@example.test>", in_reply_to="<reply1@example.test>", text="Two\n",
        sender="zed@elsewhere.example",
    ))  # fmt: skip
    first_reply = ingest(alice_mailbox, 2, reply(1, ["<first@customer.example>"]))
    # The first reply is the second one's parent: it joins the second one's conversation.
    assert first_reply.conversation_id == second_reply.conversation_id
    original = ingest(bob_mailbox, 1, build_raw())
    assert Conversation.objects.count() == 1
    conversation = Conversation.objects.get()
    assert conversation.message_count == 3
    assert {original.pk, first_reply.pk, second_reply.pk} == set(conversation.messages.values_list("pk", flat=True))


def test_a_parent_arriving_after_two_separate_replies_merges_their_conversations(alice_mailbox: Mailbox) -> None:
    left = ingest(alice_mailbox, 2, build_raw(subject="A", message_id="<l@x.example>", in_reply_to="<root@x.example>", text="l\n"))
    right = ingest(alice_mailbox, 3, build_raw(subject="B", message_id="<r@x.example>", in_reply_to="<root@x.example>", text="r\n"))
    assert left.conversation_id != right.conversation_id
    root = ingest(alice_mailbox, 1, build_raw(subject="Root", message_id="<root@x.example>", text="root\n"))
    assert Conversation.objects.count() == 1
    assert Conversation.objects.get().message_count == 3
    assert set(Message.objects.values_list("conversation_id", flat=True)) == {root.conversation_id}


def test_subject_fallback_inside_the_window_with_a_shared_participant(alice_mailbox: Mailbox) -> None:
    first = ingest(alice_mailbox, 1, build_raw())
    # A client that drops In-Reply-To and References, three days later.
    answer = build_raw(subject="AW: RE: Order 1234 never arrived", message_id="<noref@customer.example>", text="Any news?\n")
    later = ingest(alice_mailbox, 2, answer, MONDAY + timedelta(days=3))
    assert later.conversation_id == first.conversation_id


def test_subject_fallback_not_outside_the_window(alice_mailbox: Mailbox) -> None:
    first = ingest(alice_mailbox, 1, build_raw())
    answer = build_raw(subject="Re: Order 1234 never arrived", message_id="<noref@customer.example>", text="Any news?\n")
    later = ingest(alice_mailbox, 2, answer, MONDAY + timedelta(days=8))
    assert later.conversation_id != first.conversation_id


def test_subject_fallback_needs_a_shared_participant_besides_our_own_mailboxes(alice_mailbox: Mailbox) -> None:
    first = ingest(alice_mailbox, 1, build_raw())
    stranger = build_raw(sender="erin@unrelated.example", message_id="<erin@unrelated.example>", text="My order too!\n")
    other = ingest(alice_mailbox, 2, stranger, MONDAY + timedelta(hours=1))
    assert other.conversation_id != first.conversation_id


def test_automated_mail_never_threads_by_subject(alice_mailbox: Mailbox) -> None:
    first = ingest(alice_mailbox, 1, build_raw(subject="Your daily report"))
    automated = b"Auto-Submitted: auto-generated\r\n" + build_raw(subject="Your daily report", message_id="<daily2@x.example>", text="2\n")
    second = ingest(alice_mailbox, 2, automated, MONDAY + timedelta(days=1))
    assert second.conversation_id != first.conversation_id


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Fwd: RE[2]: Hello  World", "hello world"),
        ("AW: WG: Sv: Hallo", "hallo"),
        ("[support] Re: Broken", "broken"),
        ("Re:", ""),
        ("Really interesting", "really interesting"),
    ],
)
def test_subject_normalisation(subject: str, expected: str) -> None:
    assert normalised_subject(subject) == expected


def test_r22_subject_fallback_never_joins_another_members_mailbox(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    # Dana writes to Alice, and separately to Bob with the same subject and no references: a
    # subject is no proof that the two belong together, and Bob's mailbox is private to Bob.
    to_alice = ingest(alice_mailbox, 1, build_raw())
    to_bob = build_raw(to="bob@acme.test", message_id="<to-bob@customer.example>", text="Bob, my order never arrived either.\n")
    at_bob = ingest(bob_mailbox, 1, to_bob, MONDAY + timedelta(hours=1))
    assert at_bob.conversation_id != to_alice.conversation_id
    # In Alice's own mailbox the same message would have joined.
    at_alice = ingest(alice_mailbox, 2, to_bob.replace(b"<to-bob@", b"<to-alice-too@"), MONDAY + timedelta(hours=2))
    assert at_alice.conversation_id == to_alice.conversation_id


def test_references_still_join_another_members_copy_of_a_thread(alice_mailbox: Mailbox, bob_mailbox: Mailbox) -> None:
    # A reply proves the thread: teammates in CC see one conversation, whatever the mailbox.
    original = ingest(alice_mailbox, 1, build_raw(cc="bob@acme.test"))
    answer = ingest(bob_mailbox, 1, reply(1, ["<first@customer.example>"]), MONDAY + timedelta(hours=1))
    assert answer.conversation_id == original.conversation_id
