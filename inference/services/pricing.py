"""What a version's tokens cost: its prices per million tokens, in the platform's currency.

Every chat is charged at the prices its version had when it was admitted (spend.money): a
change applies from the next request, and the usage rows already written keep their cost.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from audit.services import audit_event_record
from inference.models import ModelVersion
from inference.services._actors import actor_kwargs
from spend.money import currency


def _shown(price: Decimal | None) -> str | None:
    return None if price is None else str(price)


@transaction.atomic
def model_version_prices_update(
    *,
    version: ModelVersion,
    input_per_million: Decimal | None,
    output_per_million: Decimal | None,
    price_currency: str | None = None,
    actor: User | None,
) -> ModelVersion:
    """Set `version`'s prices (None: not priced, it costs nothing); audited with before and
    after, as decimal text.

    Raises ValidationError for a negative price, one with more decimal places than a price
    may have, or a currency other than the platform's (GATEHOUSE_CURRENCY: every budget
    and report is in it). Nothing changes on a refusal.
    """
    if price_currency is not None and price_currency.upper() != currency():
        raise ValidationError(
            {"currency": f"Prices are in {currency()}, the platform's currency (GATEHOUSE_CURRENCY)."}
        )
    locked = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    before = {
        "input_per_million": _shown(locked.input_price_per_million),
        "output_per_million": _shown(locked.output_price_per_million),
    }
    locked.input_price_per_million = input_per_million
    locked.output_price_per_million = output_per_million
    locked.full_clean()
    after = {
        "input_per_million": _shown(locked.input_price_per_million),
        "output_per_million": _shown(locked.output_price_per_million),
    }
    if after == before:
        return locked
    locked.save(update_fields=["input_price_per_million", "output_price_per_million"])
    audit_event_record(
        action="model.version.prices_changed",
        target=locked,
        metadata={
            "model": locked.model.name,
            "version": locked.label,
            "currency": currency(),
            "before": before,
            "after": after,
        },
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return locked
