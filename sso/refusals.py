"""The one refusal of single sign-on: a code for programs, a message for people."""

from typing import Literal

SsoRefusalCode = Literal[
    "unknown_provider",
    "invalid_token",
    "provider_unavailable",
    "not_provisioned",
    "account_disabled",
    "username_taken",
    "no_role",
    "otp_required",
    "otp_invalid",
    "otp_enrolment_required",
    "locked",
]


class SsoRefused(Exception):
    """A sign-in that did not pass; `message` is safe to show, `reason` is for auditors only."""

    def __init__(
        self,
        *,
        code: SsoRefusalCode,
        message: str,
        reason: str = "",
        retry_after: int | None = None,
        enrolment_token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code: SsoRefusalCode = code
        self.message = message
        self.reason = reason or code
        self.retry_after = retry_after
        # With `otp_enrolment_required`: opens the enrolment endpoints and page only.
        self.enrolment_token = enrolment_token
