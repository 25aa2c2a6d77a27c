"""How a gift's amount is cut into shares (R-GIFT-1): every share at least one minor unit and
the shares summing to the amount exactly. Pure: no database."""

from __future__ import annotations

import secrets
from enum import StrEnum

from strongroom.errors import invariant


class Split(StrEnum):
    EQUAL = "equal"
    RANDOM = "random"


def equal(amount_minor: int, shares: int) -> list[int]:
    """``shares`` equal parts; the remainder goes one minor unit each to the first shares."""
    invariant(1 <= shares <= amount_minor, "a split needs 1..amount shares")
    base, rest = divmod(amount_minor, shares)
    return [base + 1 if index < rest else base for index in range(shares)]


def random(amount_minor: int, shares: int) -> list[int]:
    """``shares`` random parts (from ``secrets``), each at least one minor unit: the amount
    less one unit a share is cut at ``shares - 1`` points drawn uniformly (with repeats), so
    every way to split it is about as likely; exact at any size (integers only)."""
    invariant(1 <= shares <= amount_minor, "a split needs 1..amount shares")
    free = amount_minor - shares
    cuts = sorted(secrets.randbelow(free + 1) for _ in range(shares - 1))
    bounds = [0, *cuts, free]
    parts = [1 + bounds[i + 1] - bounds[i] for i in range(shares)]
    invariant(sum(parts) == amount_minor and min(parts) >= 1, "a random split lost money")
    return parts


def cut(split: Split, amount_minor: int, shares: int) -> list[int]:
    return equal(amount_minor, shares) if split is Split.EQUAL else random(amount_minor, shares)
