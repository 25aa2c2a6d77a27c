"""SPEC §4's limits table, worked through at each tier for every column (the pure rules; the
windows read from the journal are tests/integration/test_limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from strongroom.ledger.domain import Unlock
from strongroom.limits.rules import (
    DAY,
    KycRequired,
    Operation,
    Prices,
    Sums,
    decide,
    frees_at,
    hold_hours,
    locked_refusal,
    require_tier,
)
from strongroom.settings import AssetSetting, LimitsSettings, Settings

SETTINGS = Settings(env="test")
PRICES = Prices(LimitsSettings(), {a.code: a.scale for a in SETTINGS.assets})
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# tier -> (per transaction, per day, per year, max balance, withdrawals a day, BTC / 24 h)
TABLE = {
    "unverified": ("2000", "3000", "25000", "3000", 0, "10"),
    "primary": ("5000", "10000", "100000", "100000", 10, "80"),
    "advanced": ("5000", "20000", "200000", "100000", 10, "200"),
    "institutional": ("1000000", "5000000", None, None, 50, "400"),
}
HKD_SPENDING = [op for op in Operation if op is not Operation.CRYPTO_WITHDRAWAL]


def hkd(major: str) -> int:
    return int(Fraction(major) * 100)


def _decide(
    tier: str,
    operation: Operation,
    asset: str,
    minor: int,
    used: Sums | None = None,
    fiat: dict[str, int] | None = None,
):
    return decide(
        row=LimitsSettings().tier(tier),
        operation=operation,
        asset=asset,
        amount_minor=minor,
        used=used or Sums(),
        prices=PRICES,
        fiat_balance=fiat,
    )


def test_the_default_table_is_specs() -> None:
    for tier, (per_tx, day, year, balance, count, btc) in TABLE.items():
        row = LimitsSettings().tier(tier)
        assert (
            row.per_transaction,
            row.per_day,
            row.per_year,
            row.max_balance,
            row.withdrawals_per_day,
            row.crypto_withdrawals_24h_btc,
        ) == (per_tx, day, year, balance, count, btc)


@pytest.mark.parametrize("tier", TABLE)
@pytest.mark.parametrize("operation", HKD_SPENDING)
def test_per_transaction_at_each_tier(tier: str, operation: Operation) -> None:
    per_tx = TABLE[tier][0]
    if operation is Operation.FIAT_WITHDRAWAL and tier == "unverified":
        return  # no withdrawal at all below primary (R-KYC-6: test_real_name_rule_...)
    assert _decide(tier, operation, "HKD", hkd(per_tx)) is None
    refusal = _decide(tier, operation, "HKD", hkd(per_tx) + 1)
    assert refusal is not None
    assert refusal.error(None).details == {
        "limit": "per_transaction",
        "limit_amount": f"{per_tx}.00",
        "left": f"{per_tx}.00",
        "frees_at": None,
    }


@pytest.mark.parametrize("tier", TABLE)
def test_per_day_at_each_tier(tier: str) -> None:
    per_tx, day = TABLE[tier][0], TABLE[tier][1]
    used = Sums(day={"HKD": hkd(day) - hkd(per_tx)}, year={"HKD": hkd(day) - hkd(per_tx)})
    assert _decide(tier, Operation.P2P_SEND, "HKD", hkd(per_tx), used) is None
    used.add("HKD", 1)  # one cent more already sent today
    refusal = _decide(tier, Operation.P2P_SEND, "HKD", hkd(per_tx), used)
    assert refusal is not None and refusal.window == DAY
    details = refusal.error(T0 + DAY).details
    assert details == {
        "limit": "day",
        "limit_amount": f"{day}.00",
        "left": f"{int(per_tx) - 1}.99",
        "frees_at": (T0 + DAY).isoformat(),
    }
    assert refusal.need == Fraction(1, 100)


@pytest.mark.parametrize("tier", TABLE)
def test_per_year_at_each_tier(tier: str) -> None:
    year = TABLE[tier][2]
    big = Sums(year={"HKD": hkd("1000000000")})
    if year is None:  # institutional: no yearly limit
        assert _decide(tier, Operation.GIFT, "HKD", hkd("100"), big) is None
        return
    used = Sums(year={"HKD": hkd(year) - hkd("100")})
    assert _decide(tier, Operation.GIFT, "HKD", hkd("100"), used) is None
    refusal = _decide(tier, Operation.GIFT, "HKD", hkd("100.01"), used)
    assert refusal is not None
    assert (refusal.limit, refusal.unit, refusal.left) == ("year", "HKD", Fraction(100))


@pytest.mark.parametrize("tier", TABLE)
def test_max_balance_on_a_fiat_top_up_at_each_tier(tier: str) -> None:
    balance = TABLE[tier][3]
    fiat = {"HKD": hkd("500"), "USD": 100_00}  # 100 USD = 780 HKD at the reference price
    if balance is None:
        assert _decide(tier, Operation.TOPUP, "HKD", hkd("1000"), fiat=fiat) is None
        return
    fits = hkd(balance) - hkd("1280")
    if tier == "unverified":
        assert _decide(tier, Operation.TOPUP, "HKD", fits, fiat=fiat) is None
        refusal = _decide(tier, Operation.TOPUP, "HKD", fits + 1, fiat=fiat)
        assert refusal is not None
        assert refusal.error(None).details == {
            "limit": "max_balance",
            "limit_amount": "3000.00",
            "left": "1720.00",
            "frees_at": None,
        }
    else:  # 100,000: the balance is reached over days, each top-up within its limits
        full = {"HKD": hkd(balance) - hkd("780") - hkd("10"), "USD": 100_00}
        assert _decide(tier, Operation.TOPUP, "HKD", hkd("10"), fiat=full) is None
        refusal = _decide(tier, Operation.TOPUP, "HKD", hkd("10.01"), fiat=full)
        assert refusal is not None and refusal.limit == "max_balance"
    # crypto bought is not a fiat balance
    assert _decide(tier, Operation.TOPUP, "USDT", 1_000000, fiat=fiat) is None


@pytest.mark.parametrize("tier", ["primary", "advanced", "institutional"])
def test_withdrawals_per_day_count_at_each_tier(tier: str) -> None:
    count = TABLE[tier][4]
    assert _decide(tier, Operation.FIAT_WITHDRAWAL, "HKD", 100, Sums(day_count=count - 1)) is None
    refusal = _decide(tier, Operation.FIAT_WITHDRAWAL, "HKD", 100, Sums(day_count=count))
    assert refusal is not None
    assert refusal.error(T0).details == {
        "limit": "withdrawals_per_day",
        "limit_amount": str(count),
        "left": "0",
        "frees_at": T0.isoformat(),
    }


@pytest.mark.parametrize("tier", TABLE)
def test_crypto_withdrawals_in_btc_equivalent_at_each_tier(tier: str) -> None:
    btc = TABLE[tier][5]
    cap = int(Fraction(btc) * 10**8)
    used = Sums(day={"BTC": cap - 10**8})  # one BTC left
    assert _decide(tier, Operation.CRYPTO_WITHDRAWAL, "BTC", 10**8, used) is None
    eth = 10**18 * 29  # 29 ETH at 0.035 BTC = 1.015 BTC
    refusal = _decide(tier, Operation.CRYPTO_WITHDRAWAL, "ETH", eth, used)
    assert refusal is not None
    assert refusal.error(None).details == {
        "limit": "crypto_withdrawals_24h",
        "limit_amount": f"{btc}.00000000",
        "left": "1.00000000",
        "frees_at": None,
    }
    # the HKD columns do not apply to crypto withdrawals
    assert _decide(tier, Operation.CRYPTO_WITHDRAWAL, "USDT", 50_000 * 10**6) is None


@pytest.mark.parametrize("operation", [Operation.FIAT_WITHDRAWAL, Operation.CRYPTO_WITHDRAWAL])
def test_real_name_rule_no_withdrawal_below_primary(operation: Operation) -> None:
    with pytest.raises(KycRequired) as refused:
        require_tier("unverified", operation)
    assert refused.value.details == {"required_tier": "primary"}
    for tier in ("primary", "advanced", "institutional"):
        require_tier(tier, operation)
    require_tier("unverified", Operation.P2P_SEND)  # within the unverified limits


def test_frees_at_is_when_enough_of_the_window_has_slid_out() -> None:
    used = Sums(day={"HKD": hkd("3000")})
    refusal = _decide("unverified", Operation.P2P_SEND, "HKD", hkd("1500"), used)
    assert refusal is not None and refusal.need == Fraction(1500)
    entries = [
        (T0, Fraction(1000)),
        (T0 + timedelta(hours=1), Fraction(1000)),
        (T0 + timedelta(hours=2), Fraction(1000)),
    ]
    assert frees_at(refusal, entries) == T0 + timedelta(hours=1) + DAY
    two = _decide("unverified", Operation.P2P_SEND, "HKD", hkd("2000"), used)
    assert two is not None and frees_at(two, entries) == T0 + timedelta(hours=1) + DAY
    # more than the whole window: waiting never helps
    over = _decide("primary", Operation.P2P_SEND, "HKD", hkd("5000"), Sums(day={"HKD": 1}))
    assert over is None
    row = LimitsSettings.model_validate({"tiers": {"primary": {"per_transaction": None}}})
    never = decide(
        row=row.tier("primary"),
        operation=Operation.P2P_SEND,
        asset="HKD",
        amount_minor=hkd("10000.01"),
        used=Sums(),
        prices=PRICES,
        fiat_balance=None,
    )
    assert never is not None and never.limit == "day" and frees_at(never, entries) is None


def test_locked_money_refuses_only_what_does_not_fit_unlocked() -> None:
    lots = [Unlock(60, T0 + timedelta(hours=24)), Unlock(30, T0 + timedelta(hours=30))]
    assert (
        locked_refusal(asset="BTC", scale=8, room=100, amount_minor=10, lots=lots, now=T0) is None
    )
    refused = locked_refusal(asset="BTC", scale=8, room=100, amount_minor=50, lots=lots, now=T0)
    assert refused is not None and refused.code == "funds_locked"
    assert refused.details == {
        "asset": "BTC",
        "locked": "0.00000090",
        "unlocks_at": (T0 + timedelta(hours=24)).isoformat(),
    }
    # more than the balance: insufficient funds is the ledger's answer, not this one
    assert (
        locked_refusal(asset="BTC", scale=8, room=100, amount_minor=101, lots=lots, now=T0) is None
    )
    # after the first lot unlocks, 70 is free
    later = T0 + timedelta(hours=24, seconds=1)
    assert (
        locked_refusal(asset="BTC", scale=8, room=100, amount_minor=70, lots=lots, now=later)
        is None
    )


def test_n_is_longer_for_high_risk_tiers_and_nationalities() -> None:
    rules = LimitsSettings(tn_high_risk_tiers=["unverified"], tn_high_risk_nationalities=["KP"])
    assert hold_hours(settings=rules, tier="primary", nationality=None) == 24
    assert hold_hours(settings=rules, tier="unverified", nationality=None) == 72
    assert hold_hours(settings=rules, tier="primary", nationality="kp") == 72


def test_a_partial_tier_table_keeps_the_defaults() -> None:
    rules = LimitsSettings.model_validate({"tiers": {"unverified": {"per_day": "9"}}})
    assert rules.tier("unverified").per_day == "9"
    assert rules.tier("unverified").per_transaction == "2000"
    assert rules.tier("advanced").per_day == "20000"
    assets = [*SETTINGS.assets, AssetSetting(code="DOGE", scale=8)]
    with pytest.raises(ValueError, match="no reference price for DOGE"):
        Settings(env="production", assets=assets)
