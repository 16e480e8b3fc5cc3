"""SECURITY.md R20 (deny by default) and R21 (tenant isolation), generated from the URL resolver.

Every route of the project, including the API's and allauth's, is called with every method: a
route added tomorrow is covered tomorrow, and CI fails if it answers an anonymous caller
without being on the allowlist below, or answers another organization's ids with anything but
404.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from typing import cast as cast_to
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from postroom.api.tests.helpers import ApiClient
from postroom.comments import actions as comment_actions
from postroom.comments.models import Comment, CommentAttachment
from postroom.conftest import Cast
from postroom.contacts.actions import book_default, contact_create
from postroom.contacts.cards import card_clean
from postroom.contacts.models import BookShare, Contact, ContactBook
from postroom.conversations.ingest import message_ingest
from postroom.conversations.models import (
    Assignment,
    Conversation,
    ConversationLabel,
    ConversationMember,
    ConversationShare,
    Label,
    Message,
)
from postroom.conversations.tests.conftest import build_raw, inbox_of
from postroom.mailboxes.models import Mailbox
from postroom.mailboxes.tests.factories import make_mailbox
from postroom.notifications.models import Notification, NotificationKind
from postroom.orgs import actions
from postroom.orgs.models import Invitation, Membership, Organization, Team, TeamMembership
from postroom.orgs.policy import Role
from postroom.outbox.actions import Typed, draft_save
from postroom.outbox.models import Draft, OutgoingKind, OutgoingMessage
from postroom.responses.actions import ResponseContent, response_create
from postroom.responses.models import Response, Scope
from postroom.rules.actions import rule_create
from postroom.rules.models import Rule
from postroom.testing.factories import TeamFactory

pytestmark = pytest.mark.django_db

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
DENIED = {302, 401, 403, 404, 405}

# Routes that answer people who are not signed in, and why.
ANONYMOUS_ALLOWLIST = {
    "web:setup": "first-run page, needs the one-time setup token",
    "web:privacy": "the privacy notice is public",
    "account_login": "sign in",
    "account_logout": "sign out",
    "account_signup": "sign up",
    "account_inactive": "tells a disabled account why it cannot sign in",
    "account_email_verification_sent": "after sign-up",
    "account_confirm_email": "the verification link",
    "account_confirm_login_code": "login-code step of signing in",
    "account_reset_password": "password reset",
    "account_reset_password_done": "password reset",
    "account_reset_password_from_key": "the reset link",
    "account_reset_password_from_key_done": "password reset",
    "mfa_authenticate": "the second step of signing in",
    "mfa_login_webauthn": "passkey sign-in",
    "socialaccount_login_cancelled": "OIDC sign-in",
    "socialaccount_login_error": "OIDC sign-in",
    "socialaccount_signup": "OIDC sign-up",
    "openid_connect_login": "OIDC sign-in",
    "openid_connect_callback": "OIDC callback",
    "invitation_accept": "the invitation landing page",
    "security_txt": "security.txt (RFC 9116)",
    "csp_report": "browsers send CSP reports without cookies",
    "health": "liveness for load balancers",
}
# allauth's old /accounts/social/ paths, unnamed: they only redirect to /accounts/3rdparty/.
UNNAMED_REDIRECTS = {"accounts/social/login/cancelled/", "accounts/social/login/error/", "accounts/social/signup/", "accounts/social/connections/"}


PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>")


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "o/<slug:slug>/teams/<int:team_id>/"
    name: str

    @property
    def parameters(self) -> list[str]:
        return [route_style or regex_style for route_style, regex_style in PARAMETER.findall(self.template)]

    def url(self, values: dict[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            return str(values[match.group(1) or match.group(2)])

        path = re.sub(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", value, self.template)
        return "/" + path.replace("^", "").replace("$", "")


def _walk(resolver: URLResolver, prefix: str = "", namespace: tuple[str, ...] = ()) -> Iterator[Route]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry, prefix + str(entry.pattern), namespace + ((entry.namespace,) if entry.namespace else ()))
        elif isinstance(entry, URLPattern):
            yield Route(prefix + str(entry.pattern), ":".join((*namespace, entry.name)) if entry.name else "")


def all_routes() -> list[Route]:
    unique: dict[str, Route] = {}
    for route in _walk(get_resolver()):
        unique.setdefault(route.template, route)  # the API names one route once per operation
    return list(unique.values())


def _sample_message(owner: Membership) -> Message:
    """A message with an attachment in a mailbox of ``owner``'s (made once per test)."""
    existing = Message.objects.filter(organization_id=owner.organization_id).first()
    if existing is not None:
        return existing
    mailbox = make_mailbox(owner, address=f"inbox@{owner.organization.slug}.test")
    raw = build_raw(attachments=(("a.txt", "text/plain", b"attached"),))
    return message_ingest(mailbox=mailbox, folder=inbox_of(mailbox), uidvalidity=1, uid=1, raw=raw).message


def _sample_comment(owner: Membership, message: Message) -> tuple[Comment, Notification]:
    """A comment with an attachment by ``owner`` in the sample conversation, and a notification of theirs."""
    comment = Comment.objects.filter(organization_id=owner.organization_id).first()
    if comment is None:
        comment = comment_actions.comment_create(
            actor=owner, conversation=message.conversation, body="sample comment",
            attachments=[comment_actions.Upload(filename="c.txt", content_type="text/plain", content=b"comment file")],
        )  # fmt: skip
    notification = Notification.objects.filter(recipient=owner).first() or Notification.objects.create(
        organization_id=owner.organization_id, recipient=owner, kind=NotificationKind.MENTION, conversation=message.conversation
    )
    return comment, notification


def _sample_draft(owner: Membership, message: Message) -> Draft:
    existing = Draft.objects.filter(author=owner).first()
    if existing is not None:
        return existing
    return draft_save(
        actor=owner, draft=None, kind=OutgoingKind.REPLY, conversation=message.conversation, mailbox=None,
        typed=Typed(to="dana@customer.example", text="A reply in progress"),
    )  # fmt: skip


def _sample_response(owner: Membership) -> Response:
    """An organization-wide response (so every member of its organization can reach it)."""
    existing = Response.objects.filter(organization_id=owner.organization_id).first()
    if existing is not None:
        return existing
    return response_create(actor=owner, scope=Scope.ORGANIZATION, content=ResponseContent(name="Welcome", body="<p>Hi</p>"))


def _sample_rule(owner: Membership) -> Rule:
    """An organization rule of ``owner``'s organization (made once per test)."""
    return Rule.objects.filter(organization_id=owner.organization_id).first() or rule_create(
        actor=owner, organization=True, name="Close everything", trigger="incoming", conditions=[], actions=[{"kind": "close"}]
    )


def sample_values(cast: Cast, organization: str = "a") -> dict[str, Any]:
    """Real ids of the chosen organization's objects, so that a 404 is not just a missing row."""
    org = cast.org_a if organization == "a" else cast.org_b
    owner = cast.alice_membership if organization == "a" else cast.charlie_membership
    team = Team.objects.filter(organization=org).first() or cast_to(Team, TeamFactory(organization=org))
    invitation = Invitation.objects.filter(organization=org).first()
    if invitation is None:
        invitation, _token = actions.invitation_create(actor=owner, email=f"someone@{org.slug}.test", role=Role.MEMBER)
    message = _sample_message(owner)
    comment, notification = _sample_comment(owner, message)
    book = book_default(actor=owner)
    contact = Contact.objects.filter(book=book).first() or contact_create(
        actor=owner, book=book, card=card_clean(name="Dana", emails=[f"dana@{org.slug}.example"])
    )
    label = Label.objects.filter(organization=org).first() or Label.objects.create(organization=org, name=f"Label of {org.slug}")
    return {
        "slug": org.slug, "membership_id": owner.pk, "team_id": team.pk, "invitation_id": invitation.pk,
        "conversation_id": message.conversation_id, "message_id": message.pk, "attachment_id": message.attachments.get().pk,
        "label_id": label.pk,
        "mailbox_id": (Mailbox.objects.filter(organization=org).first() or make_mailbox(owner)).pk,
        "pk": 1, "session_id": 1, "token_id": 1, "key": "x", "uidb36": "1", "token": "not-a-token", "provider_id": "test",
        "outgoing_id": "00000000-0000-7000-8000-000000000002",
        "comment_id": comment.pk,
        "comment_attachment_id": comment.attachments.get().pk,
        "notification_id": notification.pk,
        "draft_id": _sample_draft(owner, message).pk,
        "book_id": book.pk, "contact_id": contact.pk,
        "response_id": _sample_response(owner).pk,
        "rule_id": _sample_rule(owner).pk,
    }


def _call(client: Client, method: str, url: str, data: dict[str, Any] | None = None) -> int:
    if data is None:
        return client.generic(method, url).status_code
    if url.startswith("/api/"):
        return client.generic(method, url, json.dumps(data), content_type="application/json").status_code
    return client.generic(method, url, urlencode(data), content_type="application/x-www-form-urlencoded").status_code


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    return {
        "organizations": list(Organization.objects.order_by("pk").values_list("pk", "name", "slug", "require_two_factor")),
        "memberships": list(Membership.objects.order_by("pk").values_list("pk", "organization_id", "user_id", "role")),
        "teams": list(Team.objects.order_by("pk").values_list("pk", "organization_id", "name")),
        "team_memberships": list(TeamMembership.objects.order_by("pk").values_list("pk", "team_id", "membership_id")),
        "invitations": list(Invitation.objects.order_by("pk").values_list("pk", "organization_id", "email", "role", "accepted_at", "revoked_at")),
        "comments": list(Comment.objects.order_by("pk").values_list("pk", "conversation_id", "body_sealed", "edited_at", "deleted_at")),
        "comment_attachments": list(CommentAttachment.objects.order_by("pk").values_list("pk", "comment_id")),
        "notifications": list(Notification.objects.order_by("pk").values_list("pk", "recipient_id", "read_at")),
        "shares": list(ConversationShare.objects.order_by("pk").values_list("pk", "conversation_id", "team_id", "membership_id")),
        "contact_books": list(ContactBook.objects.order_by("pk").values_list("pk", "organization_id", "name", "kind")),
        "contact_book_shares": list(BookShare.objects.order_by("pk").values_list("pk", "book_id", "team_id", "can_write")),
        "contacts": list(Contact.objects.order_by("pk").values_list("pk", "book_id", "updated_at", "name_index")),
        "responses": list(Response.objects.order_by("pk").values_list("pk", "organization_id", "scope", "owner_id", "team_id", "updated_at")),
        "rules": list(Rule.objects.order_by("pk").values_list("pk", "organization_id", "owner_id", "name", "position", "enabled")),
        "conversations": list(Conversation.objects.order_by("pk").values_list("pk", "status", "shared_with_organization")),
        "conversation_members": list(ConversationMember.objects.order_by("pk").values_list("pk", "membership_id", "place", "unread", "snoozed_until", "following")),
        "assignments": list(Assignment.objects.order_by("pk").values_list("pk", "conversation_id", "membership_id")),
        "labels": list(Label.objects.order_by("pk").values_list("pk", "organization_id", "owner_id", "name", "color")),
        "conversation_labels": list(ConversationLabel.objects.order_by("pk").values_list("pk", "conversation_id", "label_id")),
        "outgoing": list(OutgoingMessage.objects.order_by("pk").values_list("pk", "status")),
    }


# --- R20 -------------------------------------------------------------------------------------------
def test_r20_every_route_denies_anonymous_callers_unless_allowlisted(cast: Cast) -> None:
    values = sample_values(cast)
    routes = all_routes()
    assert len(routes) > 50  # the walk found the whole project, allauth and the API included
    answered = []
    for route in routes:
        if route.name in ANONYMOUS_ALLOWLIST or route.template in UNNAMED_REDIRECTS:
            continue
        url = route.url(values)
        assert resolve(url.split("?")[0]), url
        for method in METHODS:
            status = _call(Client(), method, url)
            if status not in DENIED:
                answered.append(f"{method} {url} ({route.name or route.template}) → {status}")
    assert not answered, "routes answering anonymous callers; protect them or add them to ANONYMOUS_ALLOWLIST:\n" + "\n".join(answered)


def test_r20_allowlist_names_only_routes_that_exist() -> None:
    names = {route.name for route in all_routes()}
    assert set(ANONYMOUS_ALLOWLIST) <= names
    assert {route.template for route in all_routes()} >= UNNAMED_REDIRECTS


def test_r20_unnamed_allauth_routes_only_redirect(cast: Cast) -> None:
    for template in UNNAMED_REDIRECTS:
        for method in ("GET", "POST"):
            assert Client().generic(method, "/" + template).status_code in {301, 302}


# --- R21 -------------------------------------------------------------------------------------------
ID_PARAMETERS = {
    "membership_id", "team_id", "invitation_id", "conversation_id", "message_id", "attachment_id", "mailbox_id",
    "comment_id", "comment_attachment_id", "notification_id", "label_id", "draft_id", "book_id", "contact_id", "response_id", "rule_id",
}  # fmt: skip
# A body that would be accepted if the ids were ours: so a 404 means the id was refused.
FORM_BODY = {
    "role": "member", "name": "Hijacked", "operation": "rename", "email": "intruder@example.test", "require_two_factor": "on",
    "body": "Hijacked", "read": "1", "digest": "off",
}  # fmt: skip
JSON_BODY = {
    "role": "member", "name": "Hijacked", "email": "intruder@example.test", "import_since": None, "since": None,
    "body": "Hijacked", "read": True, "digest": "off", "trigger": "incoming", "actions": [{"kind": "close"}], "rule_ids": [], "until": "2099-01-01T00:00:00Z", "personal": True,
}  # fmt: skip


def _organization_routes(with_ids: bool) -> list[Route]:
    routes = [route for route in all_routes() if "slug" in route.parameters]
    if with_ids:
        routes = [route for route in routes if ID_PARAMETERS & set(route.parameters)]
    return routes


def _assert_only_404(client: Client, routes: list[Route], values: dict[str, Any], body_ids: dict[str, Any]) -> None:
    before = snapshot()
    for route in routes:
        url = route.url(values)
        statuses = {}
        for method in METHODS:
            data = None if method in {"GET", "HEAD", "OPTIONS"} else ({**JSON_BODY, **body_ids} if url.startswith("/api/") else {**FORM_BODY, **body_ids})
            statuses[method] = _call(client, method, url, data)
        wrong = {method: status for method, status in statuses.items() if status not in {404, 405}}
        assert not wrong, f"{url}: {wrong}"
        assert 404 in statuses.values(), f"{url} refused every method with 405: the test did not reach the view"
    assert snapshot() == before


def test_r21_other_organizations_ids_are_404_on_every_page_and_endpoint(cast: Cast) -> None:
    """Alice (owner of A, the strongest role) uses A's slug with B's member, team and invitation ids."""
    b_values = sample_values(cast, "b")
    values = {**sample_values(cast, "a"), **{name: b_values[name] for name in ID_PARAMETERS}}
    routes = _organization_routes(with_ids=True)
    assert {"orgs:member_role", "orgs:member_remove", "orgs:team", "orgs:team_update", "orgs:invitation_revoke", "api:member_detail",
            "api:team_detail", "api:team_member_add", "api:team_member_remove", "api:invitation_revoke", "api:mailbox_detail",
            "api:mailbox_test", "api:mailbox_reimport", "responses:edit", "responses:delete", "api:response_detail",
            "api:response_render", "api:conversation_detail", "api:conversation_assign",
            "api:conversation_message_list", "api:attachment_download", "api:message_detail", "api:label_detail"} <= {route.name for route in routes}
    client = Client()
    client.force_login(cast.alice, backend="allauth.account.auth_backends.AuthenticationBackend")
    _assert_only_404(client, routes, values, {
        "membership": b_values["membership_id"], "membership_id": b_values["membership_id"], "team_id": b_values["team_id"],
        "label_id": str(b_values["label_id"]), "mailbox_id": str(b_values["mailbox_id"]),
    })  # fmt: skip


def test_r21_ids_in_the_body_are_scoped_too(cast: Cast, client_as) -> None:
    b_values = sample_values(cast, "b")
    team = TeamFactory(organization=cast.org_a, name="Support")
    before = snapshot()
    response = client_as(cast.alice).post(f"/o/acme/teams/{team.pk}/update/", {"operation": "add", "membership": b_values["membership_id"]})
    assert response.status_code == 404
    api_response = ApiClient(cast.alice).post(f"/orgs/acme/teams/{team.pk}/members", {"membership_id": b_values["membership_id"]})
    assert api_response.status_code == 404
    assert snapshot() == before


def test_r21_outsider_gets_404_on_every_organization_page_and_endpoint(cast: Cast) -> None:
    """Charlie owns B; every page and endpoint of A, with A's real ids, is missing for him."""
    routes = _organization_routes(with_ids=False)
    assert len(routes) >= 20
    client = Client()
    client.force_login(cast.charlie, backend="allauth.account.auth_backends.AuthenticationBackend")
    a_values = sample_values(cast, "a")
    _assert_only_404(client, routes, a_values, {
        "membership": cast.bob_membership.pk, "membership_id": cast.bob_membership.pk, "label_id": str(a_values["label_id"]),
        "mailbox_id": str(a_values["mailbox_id"]),
    })  # fmt: skip


def test_r21_unknown_organization_slug_is_the_same_404(cast: Cast, client_as) -> None:
    client = client_as(cast.alice)
    assert client.get("/o/beta/members/").status_code == client.get("/o/no-such-org/members/").status_code == 404
    assert ApiClient(cast.alice).get("/orgs/beta/members").json() == ApiClient(cast.alice).get("/orgs/no-such-org/members").json()
