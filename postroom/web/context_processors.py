from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject


def shell(request: HttpRequest) -> dict[str, Any]:
    """What the application shell needs on every page: the member's organizations, lazily."""

    def load() -> dict[str, Any]:
        from postroom.orgs.selectors import memberships_list

        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return {"memberships": []}
        return {"memberships": memberships_list(user=user)}

    return {"shell": SimpleLazyObject(load)}
