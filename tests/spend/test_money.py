"""Costs are exact decimals, and whole ledger units at any price a version may have."""

from decimal import Decimal

import pytest

from spend.money import UNITS_PER_CURRENCY, Prices, money_plain, money_text, money_units, units_money


def test_a_cost_is_exact_where_floats_are_not() -> None:
    prices = Prices(input_per_million=Decimal("0.1"), output_per_million=Decimal("0.2"))
    cost = prices.cost(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert cost == Decimal("0.3")
    assert 0.1 + 0.2 != 0.3  # what a float total would have got wrong


@pytest.mark.parametrize(
    ("input_price", "output_price", "prompt", "completion", "expected"),
    [
        ("2.5", "10", 11, 8, "0.0001075"),
        ("0.0375", "0.15", 1, 1, "0.0000001875"),
        ("0.0001", "0", 1, 0, "0.0000000001"),
        ("60", "120", 128_000, 4_096, "8.17152"),
    ],
)
def test_every_price_of_four_places_costs_whole_ledger_units(
    input_price: str, output_price: str, prompt: int, completion: int, expected: str
) -> None:
    prices = Prices(input_per_million=Decimal(input_price), output_per_million=Decimal(output_price))
    cost = prices.cost(prompt_tokens=prompt, completion_tokens=completion)
    assert cost == Decimal(expected)
    units = prices.cost_units(prompt_tokens=prompt, completion_tokens=completion)
    assert units_money(units) == cost  # nothing rounded away


def test_an_amount_finer_than_a_unit_is_rounded_up_never_down() -> None:
    assert money_units(Decimal(1) / UNITS_PER_CURRENCY / 2) == 1
    assert money_units(Decimal("1.5")) == 15 * UNITS_PER_CURRENCY // 10


def test_prices_go_to_a_worker_and_back_as_text() -> None:
    prices = Prices(input_per_million=Decimal("0.0375"), output_per_million=Decimal("12"))
    assert Prices.from_payload(prices.to_payload()) == prices
    assert Prices.from_payload(None).free


def test_amounts_read_as_a_person_writes_them() -> None:
    assert money_text(Decimal("12.5")) == "USD 12.50"
    assert money_text(Decimal("0.0002")) == "USD 0.0002"
    assert money_plain(Decimal("0.0002150000")) == "0.000215"
    assert money_plain(Decimal("7")) == "7.00"
