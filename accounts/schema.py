"""How the OpenAPI schema describes Gatehouse's bearer authentication."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.BearerAuthentication"
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A JWT access token from /api/auth/token/, or an API key (gk_...).",
        }


class EnrolmentTokenAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.EnrolmentTokenAuthentication"
    name = "enrolmentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "The enrolment_token (enrol_...) of a 403 otp_enrolment_required from /api/auth/token/: "
                "opens the enrolment endpoints only, once, for minutes."
            ),
        }
