"""Money is integers (SPEC P1): an amount is a count of an asset's minor unit.

Decimal strings exist only at the edges; they are parsed exactly and never rounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from strongroom.errors import InvalidAmount, UnknownAsset, invariant

MAX_AMOUNT_MINOR = 2**128 - 1
"""Amounts fit in 128-bit unsigned integers (R-ASSET-1)."""

AMOUNT_TEXT_MAX_CHARS: Final = 80
AMOUNT_JSON_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)?$",
    "maxLength": AMOUNT_TEXT_MAX_CHARS,
    "examples": ["12.50"],
    "description": "A decimal string over zero with at most the asset's decimals "
    "(`invalid_amount` otherwise)",
}
"""How an amount is declared in the API's document (``parse_amount``'s rules)."""

ASSET_JSON_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": r"^[A-Z][A-Z0-9]{1,9}$",
    "examples": ["HKD"],
    "description": "An asset code of this deployment (`unknown_asset` otherwise)",
}
"""How an asset code is declared in the API's document."""


def required_in_schema(*names: str) -> Callable[[dict[str, Any]], None]:
    """A model's ``json_schema_extra``: the document says ``names`` are required (no default),
    though the model takes them as optional, so that the service refuses a missing or mistyped
    amount or asset with its own code (``invalid_amount``, ``unknown_asset``) rather than
    ``validation_error``."""

    def declare(schema: dict[str, Any]) -> None:
        schema["required"] = sorted({*schema.get("required", []), *names})
        for name in names:
            schema["properties"][name].pop("default", None)

    return declare


MAX_SCALE = 18

_DECIMAL = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
_ASSET_CODE = re.compile(r"[A-Z][A-Z0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class Asset:
    code: str
    scale: int

    def __post_init__(self) -> None:
        invariant(bool(_ASSET_CODE.fullmatch(self.code)), f"bad asset code {self.code!r}")
        invariant(0 <= self.scale <= MAX_SCALE, f"bad scale {self.scale} for {self.code}")


BUILTIN_ASSETS: tuple[Asset, ...] = (
    Asset("HKD", 2),
    Asset("CNY", 2),
    Asset("USD", 2),
    Asset("BTC", 8),
    Asset("ETH", 18),
    Asset("USDT", 6),
    Asset("USDC", 6),
    Asset("PTS", 0),
)


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    asset: Asset

    def __post_init__(self) -> None:
        invariant(isinstance(self.amount_minor, int), "amount_minor must be an int")
        invariant(0 <= self.amount_minor <= MAX_AMOUNT_MINOR, "amount out of range")

    def __str__(self) -> str:
        return f"{format_amount(self.amount_minor, self.asset.scale)} {self.asset.code}"


def parse_amount(text: object, scale: int, *, allow_zero: bool = False) -> int:
    """Parse a plain decimal string into minor units, exactly.

    Refused (``invalid_amount``): anything that is not a string of digits with an optional
    fraction (no sign, exponent, whitespace, NaN, thousands separator), more decimals than
    ``scale``, zero unless ``allow_zero``, and values over 2^128 - 1 minor units.
    """
    if not isinstance(text, str):
        raise InvalidAmount('amount must be a decimal string such as "12.50"', value=repr(text))
    if len(text) > AMOUNT_TEXT_MAX_CHARS:
        raise InvalidAmount("amount is too long")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidAmount(f"amount {text!r} is not a plain decimal number", value=text)
    frac = match.group("frac") or ""
    if len(frac) > scale:
        raise InvalidAmount(
            f"amount {text!r} has more than {scale} decimals", value=text, scale=scale
        )
    whole: int = int(match.group("int"))
    minor: int = whole * 10**scale + int(frac.ljust(scale, "0") or "0")
    if minor > MAX_AMOUNT_MINOR:
        raise InvalidAmount(f"amount {text!r} is too large", value=text)
    if minor == 0 and not allow_zero:
        raise InvalidAmount("amount must be greater than zero", value=text)
    return minor


def format_amount(amount_minor: int, scale: int) -> str:
    """Format minor units as a decimal string with exactly ``scale`` decimals."""
    invariant(isinstance(amount_minor, int), "amount_minor must be an int")
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor)).rjust(scale + 1, "0")
    if scale == 0:
        return sign + digits
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


class AssetRegistry:
    """The assets an installation knows, by code."""

    def __init__(self, assets: tuple[Asset, ...] | list[Asset]) -> None:
        self._by_code = {asset.code: asset for asset in assets}
        invariant(len(self._by_code) == len(assets), "duplicate asset code")

    def get(self, code: object) -> Asset:
        if not isinstance(code, str) or code not in self._by_code:
            raise UnknownAsset(f"unknown asset {code!r}", asset=str(code)[:16])
        return self._by_code[code]

    def all(self) -> list[Asset]:
        return sorted(self._by_code.values(), key=lambda asset: asset.code)

    def money(self, amount: object, code: object) -> Money:
        asset = self.get(code)
        return Money(parse_amount(amount, asset.scale), asset)
