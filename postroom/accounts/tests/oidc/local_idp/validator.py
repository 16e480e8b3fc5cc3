from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

UNVERIFIED_EMAIL_GROUP = "unverified-email"


class ChosenSubjectValidator(OAuth2Validator):
    """Claims from the test's chosen identity: the username is the ``sub``."""

    def get_claim_dict(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "sub": user.username,
            "email": user.email,
            "email_verified": not user.groups.filter(name=UNVERIFIED_EMAIL_GROUP).exists(),
            "name": user.get_full_name() or user.username,
        }

    def get_discovery_claims(self, request: Any) -> list[str]:
        return ["sub", "email", "email_verified", "name"]
