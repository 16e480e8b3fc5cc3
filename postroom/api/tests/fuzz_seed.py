"""Seed a fresh Postroom database for the API fuzz run (test_schemathesis.py), then print JSON.

    python -m postroom.api.tests.fuzz_seed CANARY CLOSED_PORT

Run with the environment of the server it seeds (``POSTROOM_DATA_DIR``, ``DATABASE_URL``), before
that server starts. Two organizations:

- A (``acme``): an owner with a second factor (so that turning on the organization's two-factor
  requirement does not lock the fuzzer out), an admin and a member, two teams, a pending
  invitation, two mailboxes (paused, so the sync service leaves them alone; their servers are a
  closed port on loopback, so a connection test fails at once, and so does sending) with folders
  and a conversation each; the owner's is shared with a team, assigned and labelled, and has a
  reply with an HTML body and an attachment; an organization label, a personal one, and a
  queued outgoing message.
- B (``beta``): every kind of object A has, each carrying ``CANARY`` in its name, address,
  subject, body, attachment name or label. Nothing answered to A's token may ever contain it.

Prints ``{"token": <a write token of A's owner>, "ids": {...}}`` on the last line of stdout: the ids
of A's members, teams, invitations, mailboxes, conversations, messages, attachments, labels and
outgoing messages by URL parameter name, and B's as ``other_…``.
"""

from __future__ import annotations

import json
import os
import sys


def _user(email: str, name: str):  # type: ignore[no-untyped-def]
    from allauth.account.models import EmailAddress

    from postroom.accounts.models import User

    user = User.objects.create_user(email=email, password="fuzzing is not a password anyone uses", name=name)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


def _organization(*, name: str, slug: str, people: list[tuple[str, str, str]]):  # type: ignore[no-untyped-def]
    from postroom.orgs.models import Membership, Organization

    organization = Organization.objects.create(name=name, slug=slug)
    memberships = [
        Membership.objects.create(organization=organization, user=_user(email, person), role=role) for email, person, role in people
    ]
    return organization, memberships


def _mailbox(owner, *, address: str, closed_port: int, text: str, uid: int):  # type: ignore[no-untyped-def]
    from postroom.conversations.ingest import message_ingest
    from postroom.conversations.tests.conftest import build_raw, inbox_of
    from postroom.mailboxes.models import Folder, Mailbox, MailboxStatus, TlsModeChoice

    mailbox = Mailbox(
        organization_id=owner.organization_id,
        owner=owner,
        name=address,
        email_address=address,
        status=MailboxStatus.PAUSED,
        imap_host="127.0.0.1",
        imap_port=closed_port,
        imap_tls=TlsModeChoice.IMPLICIT,
        smtp_host="127.0.0.1",
        smtp_port=closed_port,
        smtp_tls=TlsModeChoice.IMPLICIT,
    )
    mailbox.credentials = {"username": address, "password": f"stored password of {address}"}
    mailbox.save()
    Folder.objects.create(mailbox=mailbox, name="Archive", role="archive", messages_total=3, messages_done=1)
    raw = build_raw(
        subject=f"About {text}",
        sender=f"Customer <customer@{address.split('@')[1]}>",
        to=address,
        message_id=f"<{uid}@fuzz.example>",
        text=f"Body about {text}\n",
    )
    message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=1, uid=uid, raw=raw)
    return mailbox


def _response(actor, scope: str, text: str):  # type: ignore[no-untyped-def]
    from postroom.responses.actions import ResponseContent, response_create

    return response_create(actor=actor, scope=scope, content=ResponseContent(name=text[:100], subject=text, body=f"<p>{text}</p>"))


def _team_inbox(owner, *, mailbox, team, assignee, text: str, replying_to: int, uid: int) -> None:  # type: ignore[no-untyped-def]
    """A reply with an HTML body, a remote image and an attachment in ``mailbox``'s conversation
    (the message with UID ``replying_to``), which is then shared with ``team``, assigned,
    labelled (an organization label and a personal one) and answered (a queued outgoing message)."""
    from postroom.conversations import actions
    from postroom.conversations.ingest import message_ingest
    from postroom.conversations.tests.conftest import build_raw, inbox_of
    from postroom.outbox.actions import outgoing_create
    from postroom.outbox.models import OutgoingKind

    raw = build_raw(
        subject=f"Re: About {text}",
        sender=f"Customer <customer@{mailbox.email_address.split('@')[1]}>",
        to=mailbox.email_address,
        message_id=f"<{uid}@fuzz.example>",
        in_reply_to=f"<{replying_to}@fuzz.example>",
        text=f"More about {text}\n",
        html=f"<p>More about <b>{text}</b> <img src='https://images.example/{text}.png'></p>",
        attachments=((f"{text}.txt", "text/plain", f"attached {text}".encode()),),
    )
    conversation = message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=1, uid=uid, raw=raw).message.conversation
    label = actions.label_create(actor=owner, name=f"Urgent {text}", personal=False, color="#dc2626")
    mine = actions.label_create(actor=owner, name=f"Mine {text}", personal=True)
    actions.conversation_share(actor=owner, conversation=conversation, team=team)
    actions.conversation_assign(actor=owner, conversation=conversation, assignee=assignee)
    actions.conversation_label(actor=owner, conversation=conversation, label=label)
    actions.conversation_label(actor=owner, conversation=conversation, label=mine)
    outgoing_create(
        actor=owner, mailbox=mailbox, kind=OutgoingKind.REPLY, conversation=conversation,
        to=[(f"Customer {text}", "customer@example.test")], subject="", text=f"Answer about {text}",
    )  # fmt: skip


def seed(canary: str, closed_port: int) -> dict[str, object]:
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    from postroom.accounts.api_tokens import api_token_create
    from postroom.audit.actions import audit_record
    from postroom.orgs import actions
    from postroom.orgs.policy import Role
    from postroom.responses.models import Scope

    acme, (owner, _admin, member) = _organization(
        name="Acme Support",
        slug="acme",
        people=[
            ("olivia@acme.test", "Olivia Owner", Role.OWNER),
            ("adam@acme.test", "Adam Admin", Role.ADMIN),
            ("mia@acme.test", "Mia Member", Role.MEMBER),
        ],
    )
    TOTP.activate(owner.user, generate_totp_secret())
    RecoveryCodes.activate(owner.user)
    for team_name in ("Support", "Sales"):
        team = actions.team_create(actor=owner, name=team_name)
        actions.team_member_add(actor=owner, team=team, membership=member)
        actions.team_member_add(actor=owner, team=team, membership=owner)
    actions.invitation_create(actor=owner, email="newcomer@example.test", role=Role.MEMBER)
    support = _mailbox(owner, address="support@acme.test", closed_port=closed_port, text="a late order", uid=1)
    _mailbox(member, address="mia@acme.test", closed_port=closed_port, text="a refund", uid=2)
    _response(owner, Scope.ORGANIZATION, "Welcome to {{ organization_name }}")
    _response(member, Scope.PERSONAL, "Mia's refund {{ input:Order }}")
    _team_inbox(owner, mailbox=support, team=team, assignee=member, text="a late order", replying_to=1, uid=101)

    label = canary.lower()
    beta, (charlie, bea) = _organization(
        name=f"Beta {canary}",
        slug="beta",
        people=[
            (f"{label}@beta.test", f"Charlie {canary}", Role.OWNER),
            (f"{label}.member@beta.test", f"Bea {canary}", Role.MEMBER),
        ],
    )
    team = actions.team_create(actor=charlie, name=f"Team {canary}")
    actions.team_member_add(actor=charlie, team=team, membership=bea)
    actions.invitation_create(actor=charlie, email=f"{label}.invited@beta.test", role=Role.MEMBER)
    betas = _mailbox(charlie, address=f"{label}.inbox@beta.test", closed_port=closed_port, text=canary, uid=3)
    _response(charlie, Scope.ORGANIZATION, canary)
    _team_inbox(charlie, mailbox=betas, team=team, assignee=bea, text=canary, replying_to=3, uid=103)
    audit_record(action="test.canary", actor=charlie.user, organization=beta, target_label=canary, details={"note": canary})

    token = api_token_create(user=owner.user, name="Schemathesis", scope="write", expires_at=None).token
    ids = _ids(acme)
    # Not the token owner's own membership: once the run has made someone else an owner, a DELETE
    # of it would be the owner leaving, and every later request would rightly answer 404.
    ids["membership_id"] = [pk for pk in ids["membership_id"] if pk != owner.pk]
    return {"token": token, "ids": ids | {f"other_{name}": values for name, values in _ids(beta).items()}}


def _ids(organization) -> dict[str, list[object]]:  # type: ignore[no-untyped-def]
    """The ids of an organization's objects, by the name of the URL parameter that takes them."""
    from postroom.conversations.models import Attachment, Conversation, Label, Message
    from postroom.mailboxes.models import Mailbox
    from postroom.orgs.models import Invitation, Membership, Team
    from postroom.outbox.models import OutgoingMessage
    from postroom.responses.models import Response

    def uuids(model) -> list[object]:  # type: ignore[no-untyped-def]
        return [str(pk) for pk in model.objects.filter(organization=organization).values_list("pk", flat=True)]

    return {
        "membership_id": list(Membership.objects.filter(organization=organization).values_list("pk", flat=True)),
        "team_id": list(Team.objects.filter(organization=organization).values_list("pk", flat=True)),
        "invitation_id": list(Invitation.objects.filter(organization=organization).values_list("pk", flat=True)),
        "mailbox_id": uuids(Mailbox),
        "conversation_id": uuids(Conversation),
        "message_id": uuids(Message),
        "attachment_id": uuids(Attachment),
        "label_id": uuids(Label),
        "outgoing_id": uuids(OutgoingMessage),
        "response_id": uuids(Response),
    }


def main() -> None:
    canary, closed_port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    print(json.dumps(seed(canary, closed_port)), flush=True)


if __name__ == "__main__":
    main()
