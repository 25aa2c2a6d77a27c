"""Pure FX arithmetic: rates, the user's side of the spread, rounding in the operator's favour.

A pair ``BASE/QUOTE`` has a mid rate (how many QUOTE one BASE is worth, in major units) and a
spread in basis points charged on each conversion: a user selling BASE gets ``bid = mid x (1 -
spread)``; a user buying BASE pays ``ask = mid x (1 + spread)`` QUOTE for one BASE, so selling
QUOTE gets ``1 / ask`` BASE per QUOTE. Rates are exact fractions here (``Fraction``); the decimal
strings at the edges are exact too (``parse_rate``), so no float touches a rate or an amount.

Rounding: the exact amount a user would receive is ``from_minor x rate`` scaled between the two
assets' minor units; the user receives it rounded DOWN to a whole minor unit, so never more than
the exact value and never one minor unit less or more than that below it (``convert_minor``). The
fraction left over stays with the operator: it is the difference between what the FX account of
the from-asset received and what the FX account of the to-asset paid out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Context, Decimal
from fractions import Fraction
from typing import Final

from strongroom.errors import DomainError, invariant

BPS: Final = 10_000
RATE_TEXT_DIGITS: Final = 18
"""Significant digits of a rate shown to a client (rounded down: display only; a quote executes
at its stored amounts, never at the shown rate)."""

_RATE = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")


class InvalidRate(DomainError):
    code = "invalid_rate"
    status = 422


class InvalidSpread(DomainError):
    code = "invalid_spread"
    status = 422


def parse_rate(text: object, *, decimals_max: int, integer_digits_max: int) -> Decimal:
    """A mid rate from its decimal string, exactly: digits with an optional fraction, over zero,
    at most ``decimals_max`` decimals and ``integer_digits_max`` digits before the point
    (``invalid_rate`` otherwise; never rounded)."""
    if not isinstance(text, str) or len(text) > decimals_max + integer_digits_max + 40:
        raise InvalidRate('a rate is a decimal string such as "7.8125"')
    match = _RATE.fullmatch(text)
    if match is None:
        raise InvalidRate(f"rate {text[:40]!r} is not a plain decimal number", value=text[:40])
    whole, frac = match.group("int").lstrip("0"), (match.group("frac") or "").rstrip("0")
    if len(frac) > decimals_max:
        raise InvalidRate(f"a rate has at most {decimals_max} decimals", decimals_max=decimals_max)
    if len(whole) > integer_digits_max:
        raise InvalidRate(
            f"a rate has at most {integer_digits_max} digits before the point",
            integer_digits_max=integer_digits_max,
        )
    value = Decimal(f"{whole or '0'}.{frac or '0'}")
    if value <= 0:
        raise InvalidRate("a rate must be greater than zero", value=text[:40])
    return value


def rate_text(value: Decimal | Fraction) -> str:
    """A rate as a plain decimal string: a ``Decimal`` as it is; a ``Fraction`` rounded down to
    ``RATE_TEXT_DIGITS`` significant digits (no exponent, no trailing zeros)."""
    if isinstance(value, Fraction):
        context = Context(prec=RATE_TEXT_DIGITS, rounding=ROUND_DOWN)
        value = context.divide(Decimal(value.numerator), Decimal(value.denominator))
    text = format(value.normalize(), "f")
    return text


def check_spread(spread_bps: object, *, spread_bps_max: int) -> int:
    if isinstance(spread_bps, bool) or not isinstance(spread_bps, int):
        raise InvalidSpread("spread_bps is a whole number of basis points")
    if not 0 <= spread_bps <= spread_bps_max:
        raise InvalidSpread(
            f"spread_bps must be 0..{spread_bps_max}", spread_bps_max=spread_bps_max
        )
    return spread_bps


@dataclass(frozen=True, slots=True)
class PairRate:
    """An operator rate: one ``base`` is worth ``mid`` ``quote`` (major units)."""

    base: str
    quote: str
    mid: Decimal
    spread_bps: int

    def __post_init__(self) -> None:
        invariant(self.base != self.quote, "a pair has two different assets")
        invariant(self.mid > 0, "a mid rate is positive")
        invariant(0 <= self.spread_bps < BPS, "a spread is below 100%")

    @property
    def mid_fraction(self) -> Fraction:
        return Fraction(self.mid)

    @property
    def bid(self) -> Fraction:
        """QUOTE a user gets for one BASE."""
        return self.mid_fraction * Fraction(BPS - self.spread_bps, BPS)

    @property
    def ask(self) -> Fraction:
        """QUOTE a user pays for one BASE."""
        return self.mid_fraction * Fraction(BPS + self.spread_bps, BPS)

    def user_rate(self, from_asset: str) -> Fraction:
        """What one major unit of ``from_asset`` buys of the other asset, spread charged."""
        if from_asset == self.base:
            return self.bid
        invariant(from_asset == self.quote, "the asset is one of the pair's")
        return 1 / self.ask

    def mid_rate(self, from_asset: str) -> Fraction:
        """The mid rate from ``from_asset`` to the other asset (no spread)."""
        if from_asset == self.base:
            return self.mid_fraction
        invariant(from_asset == self.quote, "the asset is one of the pair's")
        return 1 / self.mid_fraction


def exact_minor(from_minor: int, rate: Fraction, *, from_scale: int, to_scale: int) -> Fraction:
    """The exact amount of the to-asset, in its minor units, that ``from_minor`` is worth."""
    return from_minor * rate * Fraction(10**to_scale, 10**from_scale)


def convert_minor(from_minor: int, rate: Fraction, *, from_scale: int, to_scale: int) -> int:
    """What the user receives: the exact amount rounded down to a whole minor unit (the operator's
    favour by less than one minor unit)."""
    invariant(from_minor > 0 and rate > 0, "a conversion of something at a positive rate")
    exact = exact_minor(from_minor, rate, from_scale=from_scale, to_scale=to_scale)
    received = exact.numerator // exact.denominator
    invariant(received <= exact < received + 1, "rounded down by less than one minor unit")
    return received
