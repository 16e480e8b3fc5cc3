"""R23: no API answer carries a password, token, secret, hash, seed or credential.

Every GET operation of the OpenAPI document is called, as an owner and as a member, with a
token, over an organization whose every kind of secret exists: a mailbox with a stored password
and OAuth tokens, a pending invitation, an API token, a TOTP secret, failed sign-ins (whose audit
rows carry a login HMAC). Each answer is checked twice: no key names a secret (ApiClient does
that for every API test) and none of the known secret values appears anywhere in the body.
"""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator

from postroom.accounts.api_tokens import api_token_create
from postroom.accounts.tests.session_helpers import enable_totp
from postroom.api.tests.helpers import ApiClient, checker
from postroom.audit.actions import audit_record
from postroom.comments import actions as comment_actions
from postroom.conftest import Cast
from postroom.contacts.actions import book_create, contact_create
from postroom.contacts.cards import card_clean
from postroom.contacts.models import BookKind
from postroom.conversations import actions as conversation_actions
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import Label
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.core.tokens import token_hash
from postroom.mailboxes.models import AuthKind
from postroom.mailboxes.tests.factories import STORED_PASSWORD, make_mailbox
from postroom.orgs import actions
from postroom.orgs.models import Invitation
from postroom.orgs.policy import Role
from postroom.outbox import actions as outbox_actions
from postroom.outbox.models import OutgoingKind
from postroom.responses.actions import ResponseContent, response_create
from postroom.responses.models import Scope
from postroom.rules.actions import rule_create
from postroom.testing.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_r23_no_answer_of_any_get_operation_carries_a_secret(cast: Cast) -> None:
    team = TeamFactory(organization=cast.org_a, name="Support")
    actions.team_member_add(actor=cast.alice_membership, team=team, membership=cast.bob_membership)
    bobs = make_mailbox(cast.bob_membership, address="bob@mail.test")
    oauth = make_mailbox(cast.alice_membership, address="alice@mail.test", auth_kind=AuthKind.XOAUTH2)
    oauth.credentials = {
        "username": "alice@mail.test",
        "access_token": "ya29.an-access-token-value",
        "refresh_token": "1//a-refresh-token-value",
        "client_secret": "a-client-secret-value",
    }
    oauth.save()
    invitation, invitation_token = actions.invitation_create(actor=cast.alice_membership, email="dana@example.test", role=Role.MEMBER)
    totp_secret = enable_totp(cast.alice)
    audit_record(
        action="auth.login", actor=None, organization=cast.org_a, result="failure", details={"login_hash": "ab" * 16, "step": "password"}
    )
    owner_token = api_token_create(user=cast.alice, name="Owner script", scope="read", expires_at=None)
    member_token = api_token_create(user=cast.bob, name="Member script", scope="read", expires_at=None)

    label = Label.objects.create(organization=cast.org_a, name="Billing")
    # Alice's organization rule calls a webhook: its signing key must never be answered. (Bob, a
    # member, does not see organization rules: 404 for him on the rule's paths.)
    rule = rule_create(actor=cast.alice_membership, organization=True, name="Hook", trigger="incoming", conditions=[],
                       actions=[{"kind": "label", "label_id": str(label.pk)}, {"kind": "webhook", "url": "https://hooks.example/in"}])  # fmt: skip

    secrets = [
        rule.signing_key or "",
        STORED_PASSWORD,
        "ya29.an-access-token-value",
        "1//a-refresh-token-value",
        "a-client-secret-value",
        invitation_token,
        Invitation.objects.get().token_hash,
        totp_secret,
        owner_token.token,
        owner_token.token[11:],
        owner_token.row.token_hash,
        member_token.token[11:],
        token_hash("api_token", member_token.token),
        cast.alice.password,
        *(str(value) for authenticator in Authenticator.objects.all() for value in authenticator.data.values()),
    ]
    # A conversation in Alice's OAuth mailbox, shared with Bob's team, with an attachment and a label.
    raw = build_raw(to="alice@mail.test", attachments=(("a.txt", "text/plain", b"attached"),))
    message = message_ingest(mailbox=oauth, folder=inbox_of(oauth), uidvalidity=1, uid=1, raw=raw).message
    actions.team_member_add(actor=cast.alice_membership, team=team, membership=cast.alice_membership)
    conversation_actions.conversation_share(actor=cast.alice_membership, conversation=message.conversation, team=team)
    label = conversation_actions.label_create(actor=cast.alice_membership, name="Urgent", personal=False)
    conversation_actions.conversation_label(actor=cast.alice_membership, conversation=message.conversation, label=label)
    comment = comment_actions.comment_create(actor=cast.alice_membership, conversation=message.conversation, body="Have a look")
    book = book_create(actor=cast.alice_membership, name="Shared", kind=BookKind.ORGANIZATION)
    contact = contact_create(actor=cast.alice_membership, book=book, card=card_clean(name="Dana", emails=["dana@example.test"]))
    values = {
        "comment_id": comment.pk,
        "slug": "acme",
        "membership_id": cast.bob_membership.pk,
        "team_id": team.pk,
        "invitation_id": invitation.pk,
        "mailbox_id": bobs.pk,
        "book_id": book.pk,
        "contact_id": contact.pk,
        "response_id": response_create(
            actor=cast.alice_membership, scope=Scope.ORGANIZATION, content=ResponseContent(name="Welcome", body="<p>Hi</p>")
        ).pk,
        "rule_id": rule.pk,
        "conversation_id": message.conversation_id,
        "message_id": message.pk,
        "attachment_id": message.attachments.get().pk,
        "label_id": label.pk,
    }

    def outgoing_of(membership, mailbox) -> str:  # type: ignore[no-untyped-def]
        outgoing = outbox_actions.outgoing_create(
            actor=membership, mailbox=mailbox, kind=OutgoingKind.NEW, to=[("", "dana@example.test")], subject="Hi", text="Hi"
        )
        return str(outgoing.pk)

    document = checker().document
    get_paths = [path for path, operations in document["paths"].items() if "get" in operations]
    assert len(get_paths) >= 9
    for client, outgoing_id in (
        (ApiClient(token=owner_token.token), outgoing_of(cast.alice_membership, oauth)),
        (ApiClient(token=member_token.token), outgoing_of(cast.bob_membership, bobs)),
    ):
        values["outgoing_id"] = outgoing_id
        answered = 0
        for template in get_paths:
            path = re.sub(r"\{(\w+)\}", lambda match: str(values[match.group(1)]), template)
            response = client.get(path)  # the checker validates the schema and the keys
            rule_hidden = "{rule_id}" in template and client.headers["Authorization"].endswith(member_token.token)
            assert response.status_code in ({404} if rule_hidden else {200, 403}), (path, response.status_code)
            answered += response.status_code == 200
            body = response.content.decode()
            for secret in secrets:
                if len(secret) >= 8:
                    assert secret not in body, f"{path} answered a secret value"
        assert answered >= 15
