"""SECURITY.md R23: explicit field allowlists, no mass assignment, no secrets in answers."""

from __future__ import annotations

import ast
import importlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ninja import ModelSchema

import postroom
from postroom.api.tests.helpers import ApiClient, openapi_document
from postroom.conftest import Cast
from postroom.conversations.models import Conversation
from postroom.orgs import actions
from postroom.orgs.models import Invitation, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import Role
from postroom.testing.factories import TeamFactory

PACKAGE = Path(postroom.__file__).parent


# --- no "__all__", no exclude ----------------------------------------------------------------------
def open_field_lists(source: str) -> list[str]:
    """Where ``source`` lets a form or schema take fields it does not name one by one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name in {"Meta", "Config"}:
            for statement in node.body:
                if isinstance(statement, ast.Assign | ast.AnnAssign):
                    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                    names = {target.id for target in targets if isinstance(target, ast.Name)}
                    value = statement.value
                    if "exclude" in names or ("fields" in names and isinstance(value, ast.Constant) and value.value == "__all__"):
                        found.append(f"line {statement.lineno}: {ast.unparse(statement)}")
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "exclude" or (keyword.arg == "fields" and isinstance(keyword.value, ast.Constant) and keyword.value.value == "__all__"):
                    found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_r23_the_scanner_finds_open_field_lists() -> None:
    assert open_field_lists("class F(ModelForm):\n    class Meta:\n        fields = '__all__'\n")
    assert open_field_lists("class F(ModelForm):\n    class Meta:\n        exclude = ['password']\n")
    assert open_field_lists("class S(ModelSchema):\n    class Meta:\n        fields = '__all__'\n")
    assert open_field_lists("F = modelform_factory(User, fields='__all__')\n")
    assert not open_field_lists("class F(ModelForm):\n    class Meta:\n        fields = ['name']\n")


def test_r23_no_form_or_schema_in_postroom_takes_all_fields_or_excludes() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts or "tests" in path.parts:
            continue
        if found := open_field_lists(path.read_text(encoding="utf-8")):
            offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders


def _subclasses(base: type) -> list[type]:
    found = []
    for subclass in base.__subclasses__():
        found.append(subclass)
        found.extend(_subclasses(subclass))
    return found


def test_r23_model_forms_and_model_schemas_name_their_fields() -> None:
    # Every router and view module, so that their forms and schemas exist as classes.
    for module in ("postroom.api.urls", "postroom.audit.views", "postroom.orgs.views", "postroom.web.views"):
        importlib.import_module(module)

    for form in _subclasses(forms.ModelForm):
        if form.__module__.startswith("postroom."):
            assert isinstance(form._meta.fields, list | tuple), form  # type: ignore[attr-defined]
            assert form._meta.exclude is None, form  # type: ignore[attr-defined]
    for schema in _subclasses(ModelSchema):
        if schema.__module__.startswith("postroom."):
            meta = getattr(schema, "Meta", None)
            assert meta is not None, schema
            assert getattr(meta, "fields", "__all__") != "__all__", schema
            assert not getattr(meta, "exclude", None), schema


# What each API request body may contain: anything else is dropped by the schema.
WRITABLE = {
    "MemberPatch": {"role"},
    "TeamIn": {"name"},
    "TeamMemberIn": {"membership_id"},
    "InvitationIn": {"email", "role"},
    "OrganizationPatch": {"name", "require_two_factor"},
    "ImportRangeIn": {"import_since"},
    "ReimportIn": {"since"},
    "CommentIn": {"body"},
    "NotificationPatch": {"read"},
    "PreferenceIn": {"digest"},
    "multipart /api/v1/orgs/{slug}/comments/{comment_id}/attachments": {"files"},
    "BookIn": {"name", "kind", "team_id"},
    "BookPatch": {"name"},
    "BookShareIn": {"team_id", "can_write"},
    "ContactIn": {"name", "emails", "phones", "company", "job_title", "notes", "fields"},
    "ContactPatch": {"name", "emails", "phones", "company", "job_title", "notes", "fields"},
    "ResponseIn": {"name", "scope", "team_id", "subject", "body"},
    "ResponsePatch": {"name", "scope", "team_id", "subject", "body"},
    "RenderIn": {"to", "conversation_id", "inputs"},
    "RuleIn": {"scope", "name", "trigger", "match", "conditions", "actions", "stop_processing", "enabled"},
    "RulePatch": {"name", "trigger", "match", "conditions", "actions", "stop_processing", "enabled"},
    "ReorderIn": {"scope", "rule_ids"},
    "SnoozeIn": {"until"},
    "AssigneeIn": {"membership_id"},
    "ShareIn": {"team_id", "membership_id", "organization"},
    "LabelRefIn": {"label_id"},
    "LabelIn": {"name", "color", "personal"},
    "LabelPatch": {"name", "color"},
    "NewMessageIn": {"mailbox_id", "to", "cc", "bcc", "subject", "text", "html"},
    "ReplyIn": {"mailbox_id", "kind", "to", "cc", "bcc", "subject", "text", "html"},
    # The JSON above, in the field message, with the files.
    "multipart /api/v1/orgs/{slug}/messages/multipart": {"message", "attachments"},
    "multipart /api/v1/orgs/{slug}/conversations/{conversation_id}/messages/multipart": {"message", "attachments"},
}


def test_r23_api_request_bodies_are_the_documented_allowlists() -> None:
    document = openapi_document()
    bodies = {}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            content = operation["requestBody"]["content"]
            if "application/json" in content:
                name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                bodies[name] = set(document["components"]["schemas"][name]["properties"])
            else:  # file uploads: an inline multipart schema
                bodies[f"multipart {path}"] = set(content["multipart/form-data"]["schema"]["properties"])
    assert bodies == WRITABLE


# --- extra fields are ignored ----------------------------------------------------------------------
PROTECTED = [
    "organization", "organization_id", "org", "user", "user_id", "is_staff", "is_superuser", "is_active", "password",
    "security_stamp", "token", "token_hash", "invited_by", "accepted_at", "revoked_at", "expires_at", "id", "pk", "slug",
    "created_at", "membership", "team",
]
values = st.one_of(st.integers(min_value=-1, max_value=50), st.text(max_size=12), st.booleans(), st.none(), st.just("2099-01-01T00:00:00Z"))
extras = st.dictionaries(st.sampled_from(PROTECTED), values, min_size=1, max_size=6)
form_extras = st.dictionaries(st.sampled_from(PROTECTED), st.one_of(st.integers(min_value=-1, max_value=50).map(str), st.text(max_size=12)), min_size=1, max_size=6)
hypothesis_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def people_state() -> list[tuple[Any, ...]]:
    from postroom.accounts.models import User

    return list(User.objects.order_by("pk").values_list("pk", "email", "password", "is_active", "security_stamp"))


def memberships_state() -> list[tuple[Any, ...]]:
    return list(Membership.objects.order_by("pk").values_list("pk", "organization_id", "user_id", "role"))


@pytest.mark.django_db
@hypothesis_settings
@given(extra=extras)
def test_r23_member_patch_writes_only_the_role(cast: Cast, extra: dict[str, Any]) -> None:
    with transaction.atomic():
        people, memberships = people_state(), memberships_state()
        response = ApiClient(cast.alice).patch(f"/orgs/acme/members/{cast.bob_membership.pk}", {**extra, "role": "admin"})
        assert response.status_code == 200
        expected = [(pk, org, user, "admin" if pk == cast.bob_membership.pk else role) for pk, org, user, role in memberships]
        assert memberships_state() == expected
        assert people_state() == people
        transaction.set_rollback(True)


@pytest.mark.django_db
@hypothesis_settings
@given(extra=extras)
def test_r23_team_writes_take_only_name_and_membership_id(cast: Cast, extra: dict[str, Any]) -> None:
    with transaction.atomic():
        people, memberships = people_state(), memberships_state()
        created = ApiClient(cast.carol).post("/orgs/acme/teams", {**extra, "name": "Support"})
        assert created.status_code == 201
        team = Team.objects.get(pk=created.json()["id"])
        assert (team.organization_id, team.name) == (cast.org_a.pk, "Support")
        renamed = ApiClient(cast.carol).patch(f"/orgs/acme/teams/{team.pk}", {**extra, "name": "Care"})
        assert renamed.status_code == 200
        assert list(Team.objects.values_list("pk", "organization_id", "name")) == [(team.pk, cast.org_a.pk, "Care")]
        added = ApiClient(cast.carol).post(f"/orgs/acme/teams/{team.pk}/members", {**extra, "membership_id": cast.bob_membership.pk})
        assert added.status_code == 201
        assert list(TeamMembership.objects.values_list("team_id", "membership_id")) == [(team.pk, cast.bob_membership.pk)]
        assert memberships_state() == memberships
        assert people_state() == people
        transaction.set_rollback(True)


@pytest.mark.django_db
@hypothesis_settings
@given(extra=extras)
def test_r23_invitation_create_writes_only_email_and_role(cast: Cast, extra: dict[str, Any]) -> None:
    with transaction.atomic():
        before = timezone.now()
        response = ApiClient(cast.carol).post("/orgs/acme/invitations", {**extra, "email": "dana@example.test", "role": "member"})
        assert response.status_code == 201
        invitation = Invitation.objects.get()
        assert (invitation.organization_id, invitation.invited_by_id, invitation.role) == (cast.org_a.pk, cast.carol.pk, "member")
        assert (invitation.accepted_at, invitation.revoked_at) == (None, None)
        assert before + timedelta(days=7) <= invitation.expires_at <= timezone.now() + timedelta(days=7)
        assert len(invitation.token_hash) == 64
        assert invitation.token_hash != extra.get("token_hash")
        transaction.set_rollback(True)


CONVERSATION_PROTECTED = [
    *PROTECTED, "owner", "owner_id", "author", "author_id", "status", "sent_at", "attempts", "envelope", "raw_blob", "added_by",
    "assigned_by", "created_by", "place", "unread", "conversation", "conversation_id", "mailbox", "message_id_index", "html", "kind",
]
conversation_extras = st.dictionaries(st.sampled_from(CONVERSATION_PROTECTED), values, min_size=1, max_size=6)
# A message being sent has an html field of its own (NewMessageIn); everything else stays protected.
sending_extras = st.dictionaries(st.sampled_from([name for name in CONVERSATION_PROTECTED if name != "html"]), values, min_size=1, max_size=6)


@pytest.mark.django_db
@hypothesis_settings
@given(extra=conversation_extras)
def test_r23_label_writes_take_only_name_colour_and_personal(cast: Cast, extra: dict[str, Any]) -> None:
    from postroom.conversations.models import Label

    with transaction.atomic():
        created = ApiClient(cast.bob).post("/orgs/acme/labels", {**extra, "name": "Later", "personal": True})
        assert created.status_code == 201
        patched = ApiClient(cast.bob).patch(f"/orgs/acme/labels/{created.json()['id']}", {**extra, "name": "Soon"})
        assert patched.status_code == 200
        assert list(Label.objects.values_list("organization_id", "owner_id", "name", "color")) == [
            (cast.org_a.pk, cast.bob_membership.pk, "Soon", "#6b7280")
        ]
        transaction.set_rollback(True)


@pytest.mark.django_db
@hypothesis_settings
@given(extra=sending_extras)
def test_r23_sending_takes_only_the_message_fields(cast: Cast, extra: dict[str, Any]) -> None:
    from postroom.mailboxes.tests.factories import make_mailbox
    from postroom.outbox.models import OutgoingMessage

    with transaction.atomic():
        mailbox = make_mailbox(cast.bob_membership, address="bob@acme.test")
        body = {**extra, "mailbox_id": str(mailbox.pk), "to": [{"address": "dana@example.test"}], "subject": "Hi", "text": "Hello"}
        response = ApiClient(cast.bob).post("/orgs/acme/messages", body)
        assert response.status_code == 202
        outgoing = OutgoingMessage.objects.get()
        assert (outgoing.organization_id, outgoing.author_id, outgoing.mailbox_id) == (cast.org_a.pk, cast.bob_membership.pk, mailbox.pk)
        assert (outgoing.kind, outgoing.status, outgoing.attempts, outgoing.conversation_id) == ("new", "queued", 0, None)
        envelope = outgoing.envelope or {}
        assert (envelope["from"], envelope["recipients"], envelope["html"]) == (["bob@acme.test", "bob@acme.test"], ["dana@example.test"], None)
        transaction.set_rollback(True)


@pytest.mark.django_db
@hypothesis_settings
@given(extra=conversation_extras)
def test_r23_conversation_actions_take_only_their_fields(cast: Cast, extra: dict[str, Any]) -> None:
    from postroom.conversations.ingest import message_ingest
    from postroom.conversations.models import Assignment, ConversationMember, ConversationShare
    from postroom.conversations.tests.conftest import build_raw, inbox_of
    from postroom.mailboxes.tests.factories import make_mailbox

    with transaction.atomic():
        mailbox = make_mailbox(cast.alice_membership, address="alice@acme.test")
        message = message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=1, uid=1, raw=build_raw()).message
        path = f"/orgs/acme/conversations/{message.conversation_id}"
        client = ApiClient(cast.alice)
        assert client.post(f"{path}/assign", {**extra, "membership_id": cast.bob_membership.pk}).status_code == 200
        assert client.post(f"{path}/snooze", {**extra, "until": "2099-01-01T00:00:00Z"}).status_code == 200
        assert list(Assignment.objects.values_list("conversation_id", "membership_id", "assigned_by_id")) == [
            (message.conversation_id, cast.bob_membership.pk, cast.alice_membership.pk)
        ]
        assert list(ConversationShare.objects.values_list("team_id", "membership_id", "created_by_id")) == [
            (None, cast.bob_membership.pk, cast.alice_membership.pk)
        ]
        rows = dict(ConversationMember.objects.values_list("membership_id", "place"))
        assert rows == {cast.alice_membership.pk: "inbox", cast.bob_membership.pk: "inbox"}
        assert Conversation.objects.get().status == "open"
        transaction.set_rollback(True)


@pytest.mark.django_db
@hypothesis_settings
@given(extra=form_extras)
def test_r23_pages_ignore_extra_form_fields(cast: Cast, client_as, extra: dict[str, str]) -> None:
    with transaction.atomic():
        people = people_state()
        team = TeamFactory(organization=cast.org_a, name="Ops")
        client = client_as(cast.carol)
        assert client.post(f"/o/acme/members/{cast.bob_membership.pk}/role/", {**extra, "role": "admin"}).status_code == 302
        assert client.post("/o/acme/teams/", {**extra, "name": "Support"}).status_code == 302
        assert client.post(f"/o/acme/teams/{team.pk}/update/", {**extra, "operation": "rename", "name": "Care"}).status_code == 302
        assert client.post("/o/acme/settings/", {**extra, "name": "Acme Care"}).status_code == 302
        assert client.post("/o/acme/invitations/", {**extra, "email": "dana@example.test", "role": "member"}).status_code == 302
        assert memberships_state() == [
            (cast.alice_membership.pk, cast.org_a.pk, cast.alice.pk, "owner"),
            (cast.carol_membership.pk, cast.org_a.pk, cast.carol.pk, "admin"),
            (cast.bob_membership.pk, cast.org_a.pk, cast.bob.pk, "admin"),
            (cast.charlie_membership.pk, cast.org_b.pk, cast.charlie.pk, "owner"),
        ]
        assert sorted(Team.objects.values_list("organization_id", "name")) == [(cast.org_a.pk, "Care"), (cast.org_a.pk, "Support")]
        assert list(Organization.objects.order_by("pk").values_list("slug", "name", "require_two_factor")) == [
            ("acme", "Acme Care", False), ("beta", "Beta Sales", False),
        ]
        assert Invitation.objects.get().organization_id == cast.org_a.pk
        assert people_state() == people
        transaction.set_rollback(True)


# --- no secrets in answers -------------------------------------------------------------------------
FORBIDDEN_KEYS = {"password", "token", "token_hash", "secret", "security_stamp", "session_key", "entry_hash", "previous_hash", "totp", "recovery_codes"}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys(item)}
    return set()


@pytest.mark.django_db
def test_r23_api_answers_carry_no_hashes_tokens_or_secrets(cast: Cast) -> None:
    _invitation, token = actions.invitation_create(actor=cast.alice_membership, email="dana@example.test", role=Role.MEMBER)
    team = TeamFactory(organization=cast.org_a, name="Ops")
    alice = ApiClient(cast.alice)
    answers = [
        alice.get("/me"), alice.get("/orgs/acme/members"), alice.get(f"/orgs/acme/members/{cast.bob_membership.pk}"),
        alice.get("/orgs/acme/teams"), alice.get(f"/orgs/acme/teams/{team.pk}"), alice.get("/orgs/acme/invitations"),
        alice.get("/orgs/acme/audit"), alice.post("/orgs/acme/invitations", {"email": "erin@example.test"}),
        alice.patch(f"/orgs/acme/members/{cast.bob_membership.pk}", {"role": "admin"}),
    ]
    secrets = [token, cast.alice.password, cast.alice.security_stamp, *Invitation.objects.values_list("token_hash", flat=True)]
    for answer in answers:
        assert answer.status_code in {200, 201}
        body = answer.json()
        assert not _keys(body) & FORBIDDEN_KEYS, answer.request["PATH_INFO"]
        text = json.dumps(body)
        assert not [secret for secret in secrets if secret in text], answer.request["PATH_INFO"]
