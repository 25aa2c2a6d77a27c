"""``ledger.domain.balance_of``: the one formula of R-LEDGER-4 (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from strongroom.ledger.domain import Unlock, balance_of

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def balance(credits: int, debits: int = 0, pending: int = 0, lots: list[Unlock] | None = None):
    return balance_of(
        account_id=1,
        asset="HKD",
        debits_posted=debits,
        credits_posted=credits,
        debits_pending=pending,
        lots=lots or [],
        now=NOW,
    )


def test_total_pending_and_available_without_locks():
    held = balance(credits=100_00, debits=10_00, pending=30_00)
    assert (held.total_minor, held.pending_minor, held.locked_minor) == (90_00, 30_00, 0)
    assert held.available_minor == 60_00 and held.unlocks == ()


def test_only_lots_still_locked_count():
    lots = [
        Unlock(20_00, NOW + timedelta(hours=2)),
        Unlock(5_00, NOW),
        Unlock(7_00, NOW - timedelta(seconds=1)),
    ]
    held = balance(credits=100_00, lots=lots)
    assert held.locked_minor == 20_00 and held.available_minor == 80_00
    assert held.unlocks == (Unlock(20_00, NOW + timedelta(hours=2)),)


def test_locked_never_exceeds_what_is_held_and_the_oldest_lots_go_first():
    early, late = NOW + timedelta(hours=1), NOW + timedelta(hours=3)
    # 100 locked in two lots, then 70 spent where locked money may go (a merchant): 30 held
    held = balance(credits=100_00, debits=70_00, lots=[Unlock(60_00, early), Unlock(40_00, late)])
    assert held.locked_minor == 30_00 and held.available_minor == 0
    assert held.unlocks == (Unlock(30_00, late),)
    held = balance(credits=100_00, debits=30_00, lots=[Unlock(60_00, early), Unlock(40_00, late)])
    assert held.unlocks == (Unlock(30_00, early), Unlock(40_00, late))
    assert held.locked_minor == 70_00 and held.available_minor == 0


def test_pending_debits_come_before_locks():
    held = balance(credits=100_00, pending=90_00, lots=[Unlock(50_00, NOW + timedelta(hours=1))])
    assert held.locked_minor == 10_00 and held.available_minor == 0


def test_an_overdrawn_account_has_nothing_locked():
    held = balance(credits=0, debits=5_00, lots=[Unlock(50_00, NOW + timedelta(hours=1))])
    assert held.locked_minor == 0 and held.available_minor == -5_00
