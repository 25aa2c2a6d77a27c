"""What OKX's v1 and v2 formats share: BTC/ETH/USDT balances, rounded-down sums, parent hashes.

    parent = hex(SHA-256(h_left + h_right + BTC + ETH + USDT + str(height)))

where the three are the per-coin sums of the children rounded down to 8 decimals and written
without trailing zeros (shopspring `decimal.RoundDown(8).String()`); leaves have height 1.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from strongroom_verify.decimals import add, parse_decimal, round_down_plain
from strongroom_verify.jsonio import as_dict, as_str, field
from strongroom_verify.result import ProofError

COINS = ("BTC", "ETH", "USDT")
HASH_CHARS = 64

Balances = tuple[str, str, str]  # BTC, ETH, USDT amount strings exactly as written


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_balances(value: object, where: str) -> Balances:
    entries = as_dict(value, where)
    unknown = sorted(set(entries) - set(COINS))
    if unknown:
        raise ProofError(f"{where}: {unknown[0][:40]!r} is not one of BTC, ETH, USDT")
    amounts = [as_str(field(entries, coin, where), f"{where}.{coin}") for coin in COINS]
    for coin, amount in zip(COINS, amounts, strict=True):
        parse_decimal(amount, f"{where}.{coin}")
    return amounts[0], amounts[1], amounts[2]


def balances_json(balances: Balances) -> str:
    """Go's `json.Marshal` of the Balances struct: `{"BTC":"x","ETH":"y","USDT":"z"}`."""
    btc, eth, usdt = balances
    return f'{{"BTC":"{btc}","ETH":"{eth}","USDT":"{usdt}"}}'


def add_balances(left: Balances, right: Balances) -> Balances:
    sums = [round_down_plain(add(Decimal(a), Decimal(b))) for a, b in zip(left, right, strict=True)]
    return sums[0], sums[1], sums[2]


def is_zero(balances: Balances) -> bool:
    return all(Decimal(amount).is_zero() for amount in balances)


def parent_hash(left: str, right: str, sums: Balances, height: int) -> str:
    return sha256_hex(f"{left}{right}{''.join(sums)}{height}")


def as_mapping(balances: Balances) -> dict[str, str]:
    return dict(zip(COINS, balances, strict=True))
