"""The provider's claims: a person's name, verified email, groups and sign-in methods (amr)."""

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator

from tests.sso.provider import people


class GroupsValidator(OAuth2Validator):
    # Every additional claim is sent whatever scopes were asked (the tests ask for them all).
    oidc_claim_scope = None

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        profile = people.PROFILES.get(user.username, {})
        claims: dict[str, Any] = {
            "preferred_username": user.username,
            "email": user.email,
            "email_verified": True,
            "groups": profile.get("groups", []),
        }
        if profile.get("amr"):
            claims["amr"] = profile["amr"]
        return claims
