"""FX rates as exact fractions, parsed exactly; reference prices through chained mid rates."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from strongroom.fx.domain import InvalidRate, InvalidSpread, PairRate, check_spread, parse_rate
from strongroom.fx.service import ReferencePrices
from strongroom.money import Asset, Money

BTC, HKD, USDT, ETH = Asset("BTC", 8), Asset("HKD", 2), Asset("USDT", 6), Asset("ETH", 18)


@pytest.mark.parametrize(
    "text", ["0", "0.0", "-1", "1e3", "1,000", " 1", "1.", ".5", "NaN", "1." + "0" * 18 + "1"]
)
def test_a_bad_rate_is_refused_never_rounded(text: str) -> None:
    with pytest.raises(InvalidRate):
        parse_rate(text, decimals_max=18, integer_digits_max=12)


def test_a_rate_is_parsed_exactly() -> None:
    assert parse_rate("0007.812500", decimals_max=4, integer_digits_max=1) == Decimal("7.8125")
    with pytest.raises(InvalidRate):
        parse_rate("12.5", decimals_max=4, integer_digits_max=1)


@pytest.mark.parametrize("spread", [-1, 1001, True, "5", 2.0])
def test_a_bad_spread_is_refused(spread: object) -> None:
    with pytest.raises(InvalidSpread):
        check_spread(spread, spread_bps_max=1000)


def test_the_user_sells_at_the_bid_and_buys_at_the_ask() -> None:
    pair = PairRate("BTC", "HKD", Decimal("500000"), 100)
    assert pair.user_rate("BTC") == 495000
    assert pair.user_rate("HKD") == Fraction(1, 505000)


def test_reference_prices_chain_mid_rates_without_the_spread() -> None:
    prices = ReferencePrices(
        [
            PairRate("BTC", "HKD", Decimal("500000"), 100),
            PairRate("USDT", "HKD", Decimal("7.8"), 50),
        ]
    )
    assert prices.rate("USDT", "BTC") == Fraction(78, 10) / 500000
    # 1000 USDT = 7800 HKD = 0.0156 BTC
    assert prices.value_minor(Money(1000 * 10**6, USDT), HKD) == 780000
    assert prices.value_minor(Money(1000 * 10**6, USDT), BTC) == 1_560_000
    assert prices.value_minor(Money(10**6, USDT), ETH) is None
    assert prices.rate("HKD", "HKD") == 1
