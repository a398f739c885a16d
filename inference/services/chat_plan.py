"""What a chat request was decided to be (`ChatPlan`), or why it may not run (`ChatRejected`)."""

from dataclasses import dataclass, field

from inference.engines.base import GenerationParams
from inference.models import ModelVersion


class ChatRejected(Exception):
    """Why a chat may not run. `code` is the websocket protocol's error code; `detail_code`
    a finer one where there is one (what /v1 answers and the trail records), else `code`."""

    def __init__(self, message: str, *, code: str, detail_code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail_code = detail_code or code


@dataclass(frozen=True)
class CachePolicy:
    """A model's response cache, as it applies to one deterministic request."""

    seconds: int
    # "full": a cached answer is charged as the model's answer was; "none": not charged.
    charge: str
    # Whose answers it may be given: "shared" (the model allows it), the caller's teams
    # ("teams:1,4"), or the caller alone where they have none ("user:7").
    scope: str


@dataclass(frozen=True)
class ChatPlan:
    model_name: str
    version_id: int
    version_label: str
    params: GenerationParams
    # Served by an OpenAI-compatible server elsewhere: calling it is I/O only.
    remote: bool = False
    # The version itself, for whoever runs it in this process (not sent to workers).
    version: ModelVersion | None = field(default=None, compare=False, repr=False)
    # A local version offered tools: how its output calls them (read where the answer is sent).
    tool_call_format: str = ""
    # The models to ask, in order, when this one cannot answer before its first token.
    fallback_models: tuple[str, ...] = ()
    # Where a deterministic answer may come from, and go to, the model's response cache.
    cache: CachePolicy | None = None
