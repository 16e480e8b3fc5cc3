"""Who may do what inside an organization: the one table every check reads.

Attacker: a signed-in member who tries an action their role does not allow (an agent making
themselves owner, an admin removing the owner), or who tries to keep using a role that was just
taken away. Defences: every view, API endpoint and action asks ``role_allows`` against ``POLICY``
with the role read from the database on that request (no cached roles); the rules that a table
cannot express (``can_grant``, the last owner) live next to it in ``RULES`` and are enforced in
``postroom.orgs.actions``. The same table generates ``docs/permissions.md``
(``postroom manage permissions_doc``), and a test fails when the committed page drifts from it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


ROLE_RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Permission(StrEnum):
    VIEW_MEMBERS = "view_members"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_TEAMS = "manage_teams"
    INVITE = "invite"
    VIEW_AUDIT_LOG = "view_audit_log"
    MANAGE_SETTINGS = "manage_settings"
    MANAGE_OWNERS = "manage_owners"
    MANAGE_ORGANIZATION_CONTACTS = "manage_organization_contacts"
    MANAGE_ORGANIZATION_RESPONSES = "manage_organization_responses"


POLICY: dict[Permission, frozenset[Role]] = {
    Permission.VIEW_MEMBERS: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Permission.MANAGE_MEMBERS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_TEAMS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.INVITE: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.VIEW_AUDIT_LOG: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_SETTINGS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_OWNERS: frozenset({Role.OWNER}),
    Permission.MANAGE_ORGANIZATION_CONTACTS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_ORGANIZATION_RESPONSES: frozenset({Role.OWNER, Role.ADMIN}),
}

DESCRIPTIONS: dict[Permission, str] = {
    Permission.VIEW_MEMBERS: "See the members (with their role and 2FA status) and the teams of the organization.",
    Permission.MANAGE_MEMBERS: "Change the role of other members, and remove members.",
    Permission.MANAGE_TEAMS: "Create, rename and delete teams; add and remove team members.",
    Permission.INVITE: "See, send and revoke invitations.",
    Permission.VIEW_AUDIT_LOG: "Read, filter and export (CSV) the organization's audit log.",
    Permission.MANAGE_SETTINGS: "Rename the organization and turn the two-factor requirement on or off.",
    Permission.MANAGE_OWNERS: "Make someone an owner, and change the role of or remove an owner.",
    Permission.MANAGE_ORGANIZATION_CONTACTS: "Create, change, share and delete the organization's contact books and their contacts "
    "(everyone reads them; personal and team books belong to their member or team).",
    Permission.MANAGE_ORGANIZATION_RESPONSES: "Create, edit and delete the organization's responses (canned replies), and "
    "those of every team. Any member manages their own personal responses and those of the teams they belong to.",
}

RULES: tuple[str, ...] = (
    "Nobody changes their own role: a role is always changed by someone else.",
    "Nobody grants a role above their own, by a role change or by an invitation.",
    "The last owner cannot leave, be removed or be demoted; make someone else an owner first.",
    "Any member can leave the organization (unless they are its last owner).",
    "Roles are read from the database on every request: a change applies to the very next request.",
    "Someone who is not a member sees every page and API endpoint of the organization as missing (404); "
    "a member whose role does not allow an action gets 403.",
    "A personal response is seen and managed by its owner only; a team's by the team's members (observers only read it).",
    "An invitation works once, only for the verified address it was sent to, for 7 days, and can be revoked.",
    "A member sends from their own mailboxes and from the team mailboxes of the teams they are an active member of; "
    "observers, members outside the team and admins who are not in it may not (404).",
)


def role_allows(role: str, permission: Permission) -> bool:
    return Role(role) in POLICY[permission]


def can_grant(granter_role: str, role: str) -> bool:
    """Nobody grants a role above their own; only owners make owners."""
    return ROLE_RANK[Role(role)] <= ROLE_RANK[Role(granter_role)]


def permissions_markdown() -> str:
    """The permissions page of the documentation, generated from ``POLICY`` and ``RULES``."""
    roles = sorted(Role, key=lambda role: -ROLE_RANK[role])
    lines = [
        "# Permissions inside an organization",
        "",
        "Generated from `postroom/orgs/policy.py` by `postroom manage permissions_doc`; do not edit by hand.",
        "",
        "| Permission | " + " | ".join(role.name.title() for role in roles) + " | What it allows |",
        "|---|" + "---|" * len(roles) + "---|",
    ]
    for permission in Permission:
        marks = " | ".join("yes" if role in POLICY[permission] else "no" for role in roles)
        lines.append(f"| `{permission.value}` | {marks} | {DESCRIPTIONS[permission]} |")
    lines += ["", "## Rules the table cannot express", ""]
    lines += [f"- {rule}" for rule in RULES]
    return "\n".join(lines) + "\n"
