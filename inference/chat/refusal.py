"""The one refusal type of the chat pipeline, and what each door makes of it."""

from dataclasses import dataclass

from accounts.services.quotas import QuotaRefused
from inference.services.chat_plan import ChatRejected

# The HTTP status of each refusal code (the websocket sends the code itself).
STATUS: dict[str, int] = {
    "invalid": 400,
    "context_length_exceeded": 400,
    "content_blocked": 400,  # a guardrail blocked what the request holds
    "prompt_too_long": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "unavailable": 503,
    "bad_upstream": 502,  # the upstream answered, but not with a chat completion
}


@dataclass
class ChatRefused(Exception):
    """A chat that will not run (or not go on): `code` names why, `message` says it to a person.

    `protocol_code` is the websocket protocol's coarser code where it differs
    (`context_length_exceeded` is `invalid` there); `retry_after` is seconds, for 429s.
    """

    code: str
    message: str
    retry_after: int | None = None
    protocol_code: str | None = None
    status: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if self.protocol_code is None:
            self.protocol_code = self.code
        if self.status is None:
            self.status = STATUS.get(self.code, 503)

    @classmethod
    def from_rejected(cls, rejected: ChatRejected) -> "ChatRefused":
        return cls(code=rejected.detail_code, message=rejected.message, protocol_code=rejected.code)

    @classmethod
    def from_quota(cls, refused: QuotaRefused) -> "ChatRefused":
        return cls(
            code=refused.code, message=refused.message, retry_after=refused.retry_after, status=refused.status
        )
