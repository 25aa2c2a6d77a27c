"""FX rounding goes the operator's way by less than one minor unit (R-FX-1, issue #12), and a
conversion of locked money carries its lock pro rata, rounded up by less than one minor unit
(R-TN-2): Hypothesis over rates, spreads, amounts, scales and lots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from strongroom.fx.domain import PairRate, convert_minor, exact_minor, parse_rate, rate_text
from strongroom.ledger.domain import Balance, Unlock, balance_of, carried_lots, consumed_lots

mids = st.decimals(
    min_value=Decimal("0.000000000001"),
    max_value=Decimal("999999999999"),
    places=12,
    allow_nan=False,
    allow_infinity=False,
).filter(lambda value: value > 0)
spreads = st.integers(min_value=0, max_value=5000)
scales = st.integers(min_value=0, max_value=18)
amounts = st.integers(min_value=1, max_value=2**128 - 1)


@given(
    mid=mids,
    spread=spreads,
    from_scale=scales,
    to_scale=scales,
    from_minor=amounts,
    sell=st.booleans(),
)
def test_the_user_gets_the_exact_value_rounded_down_by_less_than_one_minor_unit(
    mid: Decimal, spread: int, from_scale: int, to_scale: int, from_minor: int, sell: bool
) -> None:
    pair = PairRate("AAA", "BBB", mid, spread)
    from_asset = "AAA" if sell else "BBB"
    rate = pair.user_rate(from_asset)
    exact = exact_minor(from_minor, rate, from_scale=from_scale, to_scale=to_scale)
    if exact < 1:
        return  # quoted as amount_too_small
    received = convert_minor(from_minor, rate, from_scale=from_scale, to_scale=to_scale)
    assert received <= exact  # never more than the exact value at the quoted rate
    assert received > exact - 1  # never a whole minor unit less
    at_mid = exact_minor(
        from_minor, pair.mid_rate(from_asset), from_scale=from_scale, to_scale=to_scale
    )
    assert received <= at_mid  # the spread never works for the user


@given(mid=mids)
def test_a_mid_rate_survives_its_text_exactly(mid: Decimal) -> None:
    text = rate_text(mid)
    assert parse_rate(text, decimals_max=18, integer_digits_max=12) == mid


NOW = datetime(2026, 12, 6, tzinfo=UTC)
lots = st.lists(
    st.tuples(st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=96)),
    max_size=6,
)


@given(
    held=st.integers(min_value=1, max_value=10**13),
    pending=st.integers(min_value=0, max_value=10**12),
    lot_specs=lots,
    spend_share=st.fractions(min_value=0, max_value=1),
    received=st.integers(min_value=1, max_value=10**15),
)
def test_locks_carried_by_a_conversion_are_the_locked_share_rounded_up(
    held: int,
    pending: int,
    lot_specs: list[tuple[int, int]],
    spend_share: Fraction,
    received: int,
) -> None:
    room = held - pending
    if room <= 0:
        return
    spent = max(1, int(room * spend_share))
    lots_given = [Unlock(amount, NOW + timedelta(hours=hours)) for amount, hours in lot_specs]

    def balance(debits_posted: int) -> Balance:
        return balance_of(
            account_id=1,
            asset="AAA",
            debits_posted=debits_posted,
            credits_posted=held,
            debits_pending=pending,
            lots=lots_given,
            now=NOW,
        )

    before, after = balance(0), balance(spent)
    used = consumed_lots(before, after)
    locked_used = sum(lot.amount_minor for lot in used)
    available_before = before.available_minor
    assert locked_used == max(0, spent - available_before)  # free money is spent first
    assert [lot.at for lot in used] == sorted(lot.at for lot in used)
    carried = carried_lots(used, spent_minor=spent, received_minor=received)
    total = sum(lot.amount_minor for lot in carried)
    share = Fraction(locked_used * received, spent)
    assert share <= total < share + 1  # rounded up, by less than one minor unit
    assert total <= received
    assert {lot.at for lot in carried} <= {lot.at for lot in used}  # the same unlock times
