"""Money, exactly: what a chat costs at its version's prices, in decimals and in ledger units.

Prices are per million tokens, with at most `PRICE_DECIMAL_PLACES` decimal places, in the
platform's currency (GATEHOUSE_CURRENCY). A cost is a `Decimal` computed without rounding
(tokens * price / 1,000,000 is exact at 10 decimal places), never a float.

Budgets are counted by the quota ledger, which counts integers: `UNITS_PER_CURRENCY` units make
one unit of the currency (10^10, so every cost at such prices is a whole number of units).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

PRICE_DECIMAL_PLACES = 4
PRICE_MAX_DIGITS = 14
COST_DECIMAL_PLACES = 10
COST_MAX_DIGITS = 28
UNITS_PER_CURRENCY = 10**10
_MILLION = Decimal(1_000_000)


def currency() -> str:
    """The platform's currency: every price, cost and budget is in it (ISO 4217)."""
    return str(getattr(settings, "GATEHOUSE_CURRENCY", "USD"))


@dataclass(frozen=True)
class Prices:
    """A version's prices per million tokens; JSON-safe as `to_payload` (decimals as text)."""

    input_per_million: Decimal = Decimal(0)
    output_per_million: Decimal = Decimal(0)

    @property
    def free(self) -> bool:
        return not (self.input_per_million or self.output_per_million)

    def cost(self, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """What these tokens cost, exactly."""
        total = prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        return total / _MILLION

    def cost_units(self, *, prompt_tokens: int, completion_tokens: int) -> int:
        """`cost` in ledger units (whole at prices of PRICE_DECIMAL_PLACES places)."""
        return money_units(self.cost(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))

    def to_payload(self) -> dict[str, str]:
        return {"input": str(self.input_per_million), "output": str(self.output_per_million)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None) -> "Prices":
        if not payload:
            return cls()
        return cls(input_per_million=Decimal(payload["input"]), output_per_million=Decimal(payload["output"]))


def money_units(amount: Decimal) -> int:
    """`amount` of the currency in ledger units, rounded up (a cost is never under-counted)."""
    scaled = amount * UNITS_PER_CURRENCY
    whole = int(scaled)
    return whole + 1 if scaled > whole else whole


def units_money(units: int) -> Decimal:
    """Ledger units as an amount of the currency, exactly."""
    return Decimal(units) / UNITS_PER_CURRENCY


def money_plain(amount: Decimal) -> str:
    """`12.50`, `0.0001075`: exact, to the cent at least, without trailing zeros past it."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents if cents == amount else amount.normalize():f}"


def money_text(amount: Decimal) -> str:
    """`USD 12.50`: the currency and the amount, as a person reads it."""
    return f"{currency()} {money_plain(amount)}"
