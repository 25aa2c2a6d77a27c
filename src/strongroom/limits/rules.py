"""The limits rules without a database (SPEC §4 limits table, R-LIMIT-1, R-KYC-6, R-TN-2).

Which columns of a tier's row apply to which operation (decided here, SPEC is silent):

- every operation but ``crypto_withdrawal``: ``per_transaction``, ``per_day`` (rolling 24 h)
  and ``per_year`` (rolling 365 days), each operation in its own windows, every asset counted
  at its reference value in the limits currency (HKD);
- ``topup`` of a fiat asset: ``max_balance``, over the user's fiat wallets in HKD;
- ``fiat_withdrawal``: ``withdrawals_per_day`` (a count, rolling 24 h);
- ``crypto_withdrawal``: ``crypto_withdrawals_24h_btc`` (rolling 24 h, BTC-equivalent) only;
- withdrawals below ``primary`` (R-KYC-6): ``kyc_required`` whatever the table says.

A transfer counts in a window from its ``created_at`` (pending ones while pending, a partly
posted one with what was posted, voided ones not at all) until ``created_at`` + the window:
a transfer made at T still counts at T + 23:59:59 and no longer at T + 24:00:00.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Final, Protocol

from strongroom.errors import DomainError, LimitExceeded
from strongroom.ledger.domain import Unlock
from strongroom.money import format_amount, parse_amount
from strongroom.settings import LimitsSettings, TierLimits


class Operation(StrEnum):
    TOPUP = "topup"
    P2P_SEND = "p2p_send"
    MERCHANT_PAYMENT = "merchant_payment"
    FIAT_WITHDRAWAL = "fiat_withdrawal"
    CRYPTO_WITHDRAWAL = "crypto_withdrawal"
    GIFT = "gift"
    CONVERSION = "conversion"


DEBIT: Final = "debit"
CREDIT: Final = "credit"


@dataclass(frozen=True, slots=True)
class Journal:
    """How an operation's transfers are found in ``ledger_transfers``: their ``code``, which
    side the user's wallet is on, and (withdrawals) the kind of asset. Later issues that add an
    operation write its transfers with this code."""

    code: str
    side: str
    asset_kind: str | None = None


JOURNAL: Final[Mapping[Operation, Journal]] = {
    Operation.TOPUP: Journal("topup", CREDIT),
    Operation.P2P_SEND: Journal("p2p", DEBIT),
    Operation.MERCHANT_PAYMENT: Journal("merchant_payment", DEBIT),
    Operation.FIAT_WITHDRAWAL: Journal("withdrawal", DEBIT, "fiat"),
    Operation.CRYPTO_WITHDRAWAL: Journal("withdrawal", DEBIT, "crypto"),
    Operation.GIFT: Journal("gift", DEBIT),
    Operation.CONVERSION: Journal("fx", DEBIT),  # the code of a conversion's legs (fx)
}
RESTRICTED: Final = frozenset(
    {Operation.P2P_SEND, Operation.FIAT_WITHDRAWAL, Operation.CRYPTO_WITHDRAWAL, Operation.GIFT}
)
"""Operations that may not use locked money (R-TN-2); merchant payments and conversions may."""
WITHDRAWALS: Final = frozenset({Operation.FIAT_WITHDRAWAL, Operation.CRYPTO_WITHDRAWAL})
REAL_NAME_TIERS: Final = frozenset({"primary", "advanced", "institutional"})
DAY: Final = timedelta(hours=24)
YEAR: Final = timedelta(days=365)
BTC: Final = "BTC"
COUNT: Final = "count"
CURRENCY_DECIMALS: Final = 2
BTC_DECIMALS: Final = 8


class KycRequired(DomainError):
    code = "kyc_required"
    status = 403


class FundsLocked(DomainError):
    code = "funds_locked"
    status = 422


def operation_of(value: object) -> Operation:
    try:
        return Operation(str(value))
    except ValueError:
        raise DomainError(
            f"unknown operation {str(value)[:40]!r}", code="unknown_operation"
        ) from None


# --------------------------------------------------------------------------- values


class PriceSource(Protocol):
    """Reference rates from outside the settings: the operator's mid rates
    (``fx.service.ReferencePrices``, registered with ``limits.service.use_reference_prices``;
    limits sits below fx, so it only knows this shape)."""

    def rate(self, from_code: str, to_code: str) -> Fraction | None:
        """Major units of ``to_code`` one major unit of ``from_code`` is worth, or None."""
        ...


class Prices:
    """Reference values of amounts in minor units: the ``source``'s rate (the operator's mid
    rates) where it has one for the asset and unit, else settings ``limits.prices``."""

    def __init__(
        self,
        settings: LimitsSettings,
        scales: Mapping[str, int],
        source: PriceSource | None = None,
    ) -> None:
        self.settings = settings
        self.scales = scales
        self.source = source
        self._hkd = {c: fraction_of(p.hkd) for c, p in settings.prices.items()}
        self._btc = {c: fraction_of(p.btc) for c, p in settings.prices.items()}
        self._rates: dict[tuple[str, str], Fraction] = {}

    def kind(self, asset: str) -> str:
        price = self.settings.prices.get(asset)
        return price.kind if price is not None else "crypto"

    def value(self, asset: str, amount_minor: int, unit: str) -> Fraction:
        """``amount_minor`` of ``asset`` in the limits currency, or in BTC (``unit`` "BTC")."""
        return Fraction(amount_minor, 10 ** self.scales.get(asset, 0)) * self.price(asset, unit)

    def price(self, asset: str, unit: str) -> Fraction:
        """One major unit of ``asset`` in ``unit`` (BTC or the limits currency)."""
        if asset == unit:
            return Fraction(1)
        key = (asset, unit)
        found = self._rates.get(key)
        if found is None:
            table = self._btc if unit == BTC else self._hkd
            rate = self.source.rate(asset, unit) if self.source is not None else None
            found = rate if rate is not None else table.get(asset, Fraction(0))
            self._rates[key] = found
        return found

    def total(self, amounts: Mapping[str, int], unit: str) -> Fraction:
        return sum((self.value(a, m, unit) for a, m in amounts.items()), Fraction(0))


def fraction_of(text: str) -> Fraction:
    """A settings decimal string, exactly."""
    return Fraction(parse_amount(text, 18, allow_zero=True), 10**18)


def shown(value: Fraction | int, unit: str, *, up: bool = False) -> str:
    """A limit's amount as a decimal string in its unit (a count as digits); ``left`` rounds
    down, a limit is exact."""
    if unit == COUNT:
        return str(int(value))
    decimals = BTC_DECIMALS if unit == BTC else CURRENCY_DECIMALS
    scaled = Fraction(value) * 10**decimals
    minor = math.ceil(scaled) if up else math.floor(scaled)
    return format_amount(max(minor, 0), decimals)


# --------------------------------------------------------------------------- usage


@dataclass(slots=True)
class Sums:
    """One user's use of one operation: minor units per asset in the rolling day and year,
    and how many transfers in the day."""

    day: dict[str, int] = field(default_factory=dict)
    year: dict[str, int] = field(default_factory=dict)
    day_count: int = 0

    def add(self, asset: str, amount_minor: int, *, sign: int = 1) -> None:
        self.day[asset] = self.day.get(asset, 0) + sign * amount_minor
        self.year[asset] = self.year.get(asset, 0) + sign * amount_minor
        self.day_count += sign


@dataclass(frozen=True, slots=True)
class Refusal:
    """A limit a request would break: its name, unit, amount, what is left, the window it is
    counted in and how much of the window must slide out for the request to fit (``need``:
    ``None`` when waiting cannot help)."""

    limit: str
    unit: str
    limit_value: Fraction | int
    left: Fraction | int
    window: timedelta | None
    need: Fraction | int | None

    def error(self, frees_at: datetime | None) -> LimitExceeded:
        limit_amount = shown(self.limit_value, self.unit, up=True)
        return LimitExceeded(
            f"this would exceed the {self.limit} limit of {limit_amount} {self.unit}",
            limit=self.limit,
            limit_amount=limit_amount,
            left=shown(self.left, self.unit),
            frees_at=None if frees_at is None else frees_at.isoformat(),
        )


def require_tier(tier: str, operation: Operation) -> None:
    """R-KYC-6: a wallet below ``primary`` cannot withdraw."""
    if operation in WITHDRAWALS and tier not in REAL_NAME_TIERS:
        raise KycRequired(
            "withdrawals need a verified identity (primary KYC or above)", required_tier="primary"
        )


def decide(
    *,
    row: TierLimits,
    operation: Operation,
    asset: str,
    amount_minor: int,
    used: Sums,
    prices: Prices,
    fiat_balance: Mapping[str, int] | None,
) -> Refusal | None:
    """The first limit of ``row`` that ``amount_minor`` of ``asset`` would break, or None.
    ``fiat_balance``: the user's fiat wallets (asset -> minor), for a fiat top-up."""
    currency = prices.settings.currency
    if operation is Operation.CRYPTO_WITHDRAWAL:
        cap = _limit(row.crypto_withdrawals_24h_btc)
        if cap is None:
            return None
        value = prices.value(asset, amount_minor, BTC)
        return _window("crypto_withdrawals_24h", BTC, cap, prices.total(used.day, BTC), value, DAY)
    value = prices.value(asset, amount_minor, currency)
    per_transaction = _limit(row.per_transaction)
    if per_transaction is not None and value > per_transaction:
        return Refusal("per_transaction", currency, per_transaction, per_transaction, None, None)
    for name, cap, sums, window in (
        ("day", _limit(row.per_day), used.day, DAY),
        ("year", _limit(row.per_year), used.year, YEAR),
    ):
        if cap is not None:
            refusal = _window(name, currency, cap, prices.total(sums, currency), value, window)
            if refusal is not None:
                return refusal
    if operation is Operation.FIAT_WITHDRAWAL and row.withdrawals_per_day is not None:
        count_cap = row.withdrawals_per_day
        if used.day_count + 1 > count_cap:
            need = used.day_count + 1 - count_cap if count_cap > 0 else None
            count_left = max(count_cap - used.day_count, 0)
            return Refusal("withdrawals_per_day", COUNT, count_cap, count_left, DAY, need)
    max_balance = _limit(row.max_balance)
    if (
        operation is Operation.TOPUP
        and max_balance is not None
        and fiat_balance is not None
        and prices.kind(asset) == "fiat"
    ):
        held = prices.total(fiat_balance, currency)
        if held + value > max_balance:
            left = max(max_balance - held, Fraction(0))
            return Refusal("max_balance", currency, max_balance, left, None, None)
    return None


def reads_windows(row: TierLimits, operation: Operation) -> bool:
    """Whether ``decide`` needs the operation's windows for this tier (a tier without any
    window limit for it costs no read)."""
    if operation is Operation.CRYPTO_WITHDRAWAL:
        return row.crypto_withdrawals_24h_btc is not None
    counted = operation is Operation.FIAT_WITHDRAWAL and row.withdrawals_per_day is not None
    return counted or row.per_day is not None or row.per_year is not None


def reads_balance(row: TierLimits, operation: Operation) -> bool:
    """Whether ``decide`` needs the user's fiat balance (a top-up under a max balance)."""
    return operation is Operation.TOPUP and row.max_balance is not None


def _window(
    name: str, unit: str, cap: Fraction, used: Fraction, value: Fraction, window: timedelta
) -> Refusal | None:
    if used + value <= cap:
        return None
    need = used + value - cap if value <= cap else None
    return Refusal(name, unit, cap, max(cap - used, Fraction(0)), window, need)


def _limit(text: str | None) -> Fraction | None:
    return None if text is None else fraction_of(text)


def frees_at(
    refusal: Refusal, entries: Iterable[tuple[datetime, Fraction | int]]
) -> datetime | None:
    """When enough of the window has slid out for the refused request to fit: ``entries`` are
    the window's transfers (when, value in the refusal's unit), any order."""
    if refusal.need is None or refusal.window is None:
        return None
    slid = Fraction(0)
    for at, value in sorted(entries, key=lambda entry: entry[0]):
        slid += value
        if slid >= refusal.need:
            return at + refusal.window
    return None


# --------------------------------------------------------------------------- T+N


def locked_refusal(
    *, asset: str, scale: int, room: int, amount_minor: int, lots: Sequence[Unlock], now: datetime
) -> FundsLocked | None:
    """``funds_locked`` when ``amount_minor`` fits ``room`` (total - pending, before the
    request) but not what the lots still locked at ``now`` leave free (R-TN-2); None when it
    fits, or when it does not fit at all (insufficient funds is the ledger's answer)."""
    live = sorted((lot for lot in lots if lot.at > now), key=lambda lot: lot.at)
    locked = sum(lot.amount_minor for lot in live)
    if amount_minor > room or amount_minor <= room - min(locked, room):
        return None
    unlocks_at = live[-1].at
    remaining = locked
    for lot in live:
        remaining -= lot.amount_minor
        if amount_minor <= room - min(remaining, room):
            unlocks_at = lot.at
            break
    return FundsLocked(
        f"part of this {asset} is locked after a purchase until {unlocks_at.isoformat()}",
        asset=asset,
        locked=format_amount(min(locked, room), scale),
        unlocks_at=unlocks_at.isoformat(),
    )


def hold_hours(*, settings: LimitsSettings, tier: str, nationality: str | None) -> int:
    """N of T+N (R-TN-1): longer for a tier or nationality the risk rules list."""
    high_risk = tier in settings.tn_high_risk_tiers or (
        nationality is not None
        and nationality.upper() in {n.upper() for n in settings.tn_high_risk_nationalities}
    )
    return settings.tn_high_risk_hours if high_risk else settings.tn_hours
