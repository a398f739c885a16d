"""What a request is charged when it ends: its prompt's tokens and its answer's.

Token quotas settle at their sum; budgets at what they cost at the prices the request was
admitted at (`spend.money.Prices`, kept with its hold), so a price changed meanwhile applies
from the next request.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Charge:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# A request that used nothing (refused downstream, failed before its first token).
NOTHING = Charge()
