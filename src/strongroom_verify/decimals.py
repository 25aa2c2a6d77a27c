"""Exact decimal arithmetic for the exchanges' formats (amounts as decimal strings).

Every operation runs in an explicit context whose precision is far above any amount we accept,
with Inexact and Rounded trapped, so a sum can never be rounded silently. Only the deliberate
round-down that OKX uses runs in a rounding context.
"""

from __future__ import annotations

import re
from decimal import (
    ROUND_DOWN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Subnormal,
    Underflow,
)

from strongroom_verify.result import ProofError

MAX_AMOUNT_CHARS = 80  # longer amount strings are refused, which bounds every sum's digits
_PRECISION = 1000  # far above MAX_AMOUNT_CHARS plus the digits a sum of 2^64 of them can grow

EXACT = Context(
    prec=_PRECISION,
    traps=[InvalidOperation, DivisionByZero, Overflow, Underflow, Subnormal, Inexact, Rounded],
)
_ROUND_DOWN = Context(prec=_PRECISION, rounding=ROUND_DOWN, traps=[InvalidOperation, Overflow])

_SIGNED_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
ZERO = Decimal(0)
_EIGHT_PLACES = Decimal("1E-8")


def parse_decimal(value: object, where: str, *, allow_number: bool = False) -> Decimal:
    """Parse an amount written as a plain decimal string (`-12.50`): no exponent, no `+`, no
    spaces. With allow_number, a JSON number (already an int or Decimal) is accepted too."""
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif allow_number and isinstance(value, Decimal):
        value = format(value, "f")
    if not isinstance(value, str):
        raise ProofError(f"{where}: expected a decimal amount string")
    if len(value) > MAX_AMOUNT_CHARS or not _SIGNED_DECIMAL.fullmatch(value):
        raise ProofError(f"{where}: {value[:MAX_AMOUNT_CHARS]!r} is not a plain decimal amount")
    return Decimal(value)


def add(left: Decimal, right: Decimal) -> Decimal:
    """left + right, exactly (raises decimal.Inexact rather than round)."""
    return EXACT.add(left, right)


def java_plain(value: Decimal) -> str:
    """Java's `BigDecimal.stripTrailingZeros().toPlainString()` (zero is written `0`)."""
    if value.is_zero():
        return "0"
    return format(EXACT.normalize(value), "f")


def round_down_plain(value: Decimal, places: int = 8) -> str:
    """Round toward zero to `places` decimals, then write without trailing zeros (OKX's
    `decimal.RoundDown(8).String()`)."""
    quantum = _EIGHT_PLACES if places == 8 else Decimal(1).scaleb(-places)
    return java_plain(_ROUND_DOWN.quantize(value, quantum))
