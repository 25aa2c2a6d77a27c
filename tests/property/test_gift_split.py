"""R-GIFT-1: a gift's shares sum to its amount exactly and each is at least one minor unit, for
both splits, at any size (amounts up to the ledger's 2^128 - 1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.errors import InvariantViolation
from strongroom.gifts import split
from strongroom.money import MAX_AMOUNT_MINOR

SHARES_MAX = 1000


@st.composite
def amounts_and_shares(draw: st.DrawFn) -> tuple[int, int]:
    shares = draw(st.integers(min_value=1, max_value=SHARES_MAX))
    amount = draw(
        st.one_of(
            st.integers(min_value=shares, max_value=shares + 50),  # tight: ones and twos
            st.integers(min_value=shares, max_value=10**12),
            st.integers(min_value=shares, max_value=MAX_AMOUNT_MINOR),
        )
    )
    return amount, shares


@settings(max_examples=300, deadline=None)
@given(amounts_and_shares(), st.sampled_from(list(split.Split)))
def test_shares_sum_exactly_and_each_holds_a_minor_unit(
    case: tuple[int, int], how: split.Split
) -> None:
    amount, shares = case
    parts = split.cut(how, amount, shares)
    assert len(parts) == shares
    assert sum(parts) == amount
    assert min(parts) >= 1


@settings(max_examples=200, deadline=None)
@given(amounts_and_shares())
def test_equal_spreads_the_remainder_one_unit_to_the_first_shares(case: tuple[int, int]) -> None:
    amount, shares = case
    parts = split.equal(amount, shares)
    base, rest = divmod(amount, shares)
    assert parts == [base + 1] * rest + [base] * (shares - rest)


def test_worked_examples() -> None:
    assert split.equal(1000, 3) == [334, 333, 333]
    assert split.equal(5, 5) == [1, 1, 1, 1, 1]
    assert split.random(5, 5) == [1, 1, 1, 1, 1]
    assert split.random(7, 1) == [7]


def test_random_splits_differ() -> None:
    seen = {tuple(split.random(10_000, 5)) for _ in range(20)}
    assert len(seen) > 1


@pytest.mark.parametrize("shares", [0, 6])
def test_a_split_needs_one_unit_a_share(shares: int) -> None:
    with pytest.raises(InvariantViolation):
        split.cut(split.Split.EQUAL, 5, shares)
