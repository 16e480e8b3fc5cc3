"""Who may do what inside an organization: the one table every check reads.

Views, the API and actions all ask ``role_allows``; the table also generates the permissions
page of the documentation, so the two cannot drift.
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


POLICY: dict[Permission, frozenset[Role]] = {
    Permission.VIEW_MEMBERS: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Permission.MANAGE_MEMBERS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_TEAMS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.INVITE: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.VIEW_AUDIT_LOG: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_SETTINGS: frozenset({Role.OWNER, Role.ADMIN}),
    Permission.MANAGE_OWNERS: frozenset({Role.OWNER}),
}


def role_allows(role: str, permission: Permission) -> bool:
    return Role(role) in POLICY[permission]


def can_grant(granter_role: str, role: str) -> bool:
    """Nobody grants a role above their own; only owners make owners."""
    return ROLE_RANK[Role(role)] <= ROLE_RANK[Role(granter_role)]
