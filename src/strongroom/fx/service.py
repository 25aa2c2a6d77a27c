"""FX rates, quotes and conversions (R-FX-1, R-TN-2) and reference prices.

Rates: one row per pair of assets (``models.FxRate``); the other direction is derived (a user
converting QUOTE to BASE buys BASE at the ask). Setting the reverse of a pair that exists is
refused (``inverse_pair_exists``): delete it first, so two prices for the same two assets never
coexist. Every change is audited (``fx.rate_set``, ``fx.rate_deleted``, with the previous
values).

Quotes: bound to the user, valid ``fx.quote_ttl_s`` seconds, stored with the exact amounts; the
user is charged the spread and the received amount is rounded down (``domain.convert_minor``).

Conversions: in the caller's transaction, at most once per quote (a unique key on the quote;
callers add the ``Idempotency-Key`` with ``movements.service.run_once``): the two legs are
LINKED ledger transfers (user's from-wallet → operator FX account of the from-asset; operator
FX account of the to-asset → user's to-wallet: both or neither), then the lock of any locked
money used is carried pro rata to the received asset (``ledger.service.carry_locks``).
Services never commit.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError, InsufficientFunds, InvalidAmount, NotFound
from strongroom.fx import domain
from strongroom.fx.domain import PairRate
from strongroom.fx.models import FxConversion, FxQuote, FxRate
from strongroom.identity import audit, verification
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferGuard, TransferSpec
from strongroom.limits import service as limits
from strongroom.money import MAX_AMOUNT_MINOR, Asset, AssetRegistry, Money
from strongroom.settings import FxSettings

FX_ACCOUNT: Final = "fx"
REFERENCE_HOPS_MAX: Final = 4
"""How many pairs a reference price may chain (USDT → HKD → BTC is two)."""

ROW_ID: Final = re.compile(r"[a-z]{1,2}_[0-9a-f]{32}")
"""The shape of a quote's and a conversion's id (``q_...``, ``cv_...``): anything else names
none, and is refused before it reaches the database."""

LimitCheck = Callable[[Session, User, Money], None]
"""The limits engine's check for operation kind ``conversion`` (issue #11): raises
``limit_exceeded`` (or another refusal) when ``user`` may not convert ``Money`` now."""


class SameAsset(DomainError):
    code = "same_asset"
    status = 422


class RateUnavailable(DomainError):
    code = "rate_unavailable"
    status = 422


# --------------------------------------------------------------------------- rates


def rates(*, session: Session, limit: int = 500) -> list[FxRate]:
    """Every operator rate, by pair."""
    return list(session.scalars(select(FxRate).order_by(FxRate.base, FxRate.quote).limit(limit)))


def pair_rate(row: FxRate) -> PairRate:
    return PairRate(row.base, row.quote, Decimal(row.mid), row.spread_bps)


def find_pair(*, session: Session, first: str, second: str) -> PairRate | None:
    """The rate of the two assets, in whichever orientation it is set; None when unset."""
    row = session.scalars(
        select(FxRate).where(
            or_(
                (FxRate.base == first) & (FxRate.quote == second),
                (FxRate.base == second) & (FxRate.quote == first),
            )
        )
    ).first()
    return None if row is None else pair_rate(row)


def set_rate(
    *,
    session: Session,
    operator: User,
    base: Asset,
    quote: Asset,
    mid: object,
    spread_bps: object,
    settings: FxSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> FxRate:
    """Set (create or replace) the rate of ``base/quote``; audited with the previous values."""
    if base.code == quote.code:
        raise SameAsset("a rate needs two different assets", asset=base.code)
    parsed = domain.parse_rate(
        mid,
        decimals_max=settings.rate_decimals_max,
        integer_digits_max=settings.rate_integer_digits_max,
    )
    spread = domain.check_spread(spread_bps, spread_bps_max=settings.spread_bps_max)
    reverse = session.get(FxRate, (quote.code, base.code))
    if reverse is not None:
        raise Conflict(
            f"the rate is set as {quote.code}/{base.code}: change that one, or delete it first",
            code="inverse_pair_exists",
            base=quote.code,
            quote=base.code,
        )
    row = session.get(FxRate, (base.code, quote.code), with_for_update=True)
    previous = None if row is None else {"mid": row.mid, "spread_bps": row.spread_bps}
    if row is None:
        count = session.scalar(select(func.count()).select_from(FxRate)) or 0
        if count >= settings.rates_max:
            raise Conflict(
                f"at most {settings.rates_max} rates", code="too_many_rates", max=settings.rates_max
            )
        row = FxRate(base=base.code, quote=quote.code)
        session.add(row)
    row.mid = domain.rate_text(parsed)
    row.spread_bps = spread
    row.updated_at = now or utcnow()
    row.updated_by = operator.id
    audit.record(
        session=session,
        action="fx.rate_set",
        category=audit.OPERATOR,
        actor=operator,
        origin=origin,
        details={
            "base": base.code,
            "quote": quote.code,
            "mid": row.mid,
            "spread_bps": spread,
            "previous": previous,
        },
    )
    session.flush()
    return row


def delete_rate(
    *, session: Session, operator: User, base: Asset, quote: Asset, origin: Origin = NOWHERE
) -> None:
    """Remove the rate of ``base/quote`` (no more quotes for the pair); audited."""
    row = session.get(FxRate, (base.code, quote.code), with_for_update=True)
    if row is None:
        raise NotFound(f"no rate {base.code}/{quote.code}", code="rate_not_found")
    audit.record(
        session=session,
        action="fx.rate_deleted",
        category=audit.OPERATOR,
        actor=operator,
        origin=origin,
        details={
            "base": row.base,
            "quote": row.quote,
            "mid": row.mid,
            "spread_bps": row.spread_bps,
        },
    )
    session.delete(row)
    session.flush()


# --------------------------------------------------------------------------- quotes


def quote(
    *,
    session: Session,
    user: User,
    amount: Money,
    to_asset: Asset,
    settings: FxSettings,
    now: datetime | None = None,
) -> FxQuote:
    """A quote for converting ``amount`` to ``to_asset``, valid ``quote_ttl_s`` seconds."""
    from_asset = amount.asset
    if from_asset.code == to_asset.code:
        raise SameAsset("convert between two different assets", asset=from_asset.code)
    pair = find_pair(session=session, first=from_asset.code, second=to_asset.code)
    if pair is None:
        raise RateUnavailable(
            f"no rate between {from_asset.code} and {to_asset.code}",
            from_asset=from_asset.code,
            to_asset=to_asset.code,
        )
    rate = pair.user_rate(from_asset.code)
    exact = domain.exact_minor(
        amount.amount_minor, rate, from_scale=from_asset.scale, to_scale=to_asset.scale
    )
    to_minor = domain.convert_minor(
        amount.amount_minor, rate, from_scale=from_asset.scale, to_scale=to_asset.scale
    )
    if to_minor <= 0:
        raise InvalidAmount(
            "the amount is too small to receive one minor unit of the other asset",
            code="amount_too_small",
        )
    if to_minor > MAX_AMOUNT_MINOR:
        raise InvalidAmount("the amount would buy more than an amount can hold")
    now = now or utcnow()
    row = FxQuote(
        id=f"q_{uuid.uuid4().hex}",
        user_id=user.id,
        from_asset=from_asset.code,
        to_asset=to_asset.code,
        from_minor=amount.amount_minor,
        to_minor=to_minor,
        rate=domain.rate_text(rate),
        to_exact=f"{exact.numerator}/{exact.denominator}",
        pair_base=pair.base,
        pair_quote=pair.quote,
        mid=domain.rate_text(pair.mid),
        spread_bps=pair.spread_bps,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.quote_ttl_s),
    )
    session.add(row)
    session.flush()
    return row


def own_quote(*, session: Session, user: User, quote_id: str, lock: bool = False) -> FxQuote:
    """The user's quote; ``quote_not_found`` for any other id (someone else's included)."""
    if not ROW_ID.fullmatch(quote_id):
        raise NotFound("no such quote", code="quote_not_found")
    query = select(FxQuote).where(FxQuote.id == quote_id, FxQuote.user_id == user.id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("no such quote", code="quote_not_found")
    return row


# --------------------------------------------------------------------------- conversions


def convert(
    *,
    session: Session,
    user: User,
    quote_id: str,
    assets: AssetRegistry,
    now: datetime | None = None,
    check_limits: LimitCheck | None = None,
    guard: TransferGuard | None = None,
) -> FxConversion:
    """Convert at the user's live quote, at most once per quote (callers add the
    Idempotency-Key: ``movements.service.run_once``).

    Refused, nothing moved: ``quote_not_found`` (404: unknown or someone else's),
    ``quote_used`` and ``quote_expired`` (409), ``insufficient_funds`` (422); the limits
    check's refusal (``check_limits``: the limits engine, for operation kind ``conversion``).
    ``guard`` (the limits engine's, for the same operation) rides on the leg that debits the
    user, so the ledger checks the limits again in the transaction that writes the legs, after
    it locked the accounts (race-safe, as P2P)."""
    verification.require_verified(user)
    now = now or utcnow()
    row = own_quote(session=session, user=user, quote_id=quote_id, lock=True)
    used = session.scalar(select(FxConversion.id).where(FxConversion.quote_id == row.id))
    if used is not None:
        raise Conflict("this quote was used already", code="quote_used")
    if now >= row.expires_at:
        raise Conflict(
            "the quote has expired: ask for a new one",
            code="quote_expired",
            expired_at=row.expires_at.isoformat(),
        )
    return _execute(
        session=session,
        user=user,
        row=row,
        now=now,
        assets=assets,
        check_limits=check_limits,
        guard=guard,
    )


def _execute(
    *,
    session: Session,
    user: User,
    row: FxQuote,
    now: datetime,
    assets: AssetRegistry,
    check_limits: LimitCheck | None,
    guard: TransferGuard | None,
) -> FxConversion:
    if check_limits is not None:  # the limits engine's one call site (operation "conversion")
        check_limits(session, user, Money(row.from_minor, assets.get(row.from_asset)))
    source = ledger.user_wallet_id_if_any(session=session, user_id=user.id, asset=row.from_asset)
    held = 0 if source is None else _spendable(session, source, now)
    if source is None or held < row.from_minor:
        raise InsufficientFunds(
            "insufficient funds",
            account_id=source,
            asset=row.from_asset,
            available_minor=str(max(held, 0)),
            requested_minor=str(row.from_minor),
        )
    target = ledger.user_wallet_id(session=session, user_id=user.id, asset=row.to_asset)
    fx_from = ledger.operator_account(session=session, kind=FX_ACCOUNT, asset=row.from_asset).id
    fx_to = ledger.operator_account(session=session, kind=FX_ACCOUNT, asset=row.to_asset).id
    conversion_id = f"cv_{uuid.uuid4().hex}"
    legs = [
        TransferSpec(
            id=f"{conversion_id}.out",
            debit_account_id=source,
            credit_account_id=fx_from,
            asset=row.from_asset,
            amount_minor=row.from_minor,
            code="fx",
            note=f"{row.from_asset}>{row.to_asset} {row.id}",
            linked=True,
            guard=guard,
        ),
        TransferSpec(
            id=f"{conversion_id}.in",
            debit_account_id=fx_to,
            credit_account_id=target,
            asset=row.to_asset,
            amount_minor=row.to_minor,
            code="fx",
            note=f"{row.from_asset}>{row.to_asset} {row.id}",
        ),
    ]
    results = ledger.create_transfers(session=session, specs=legs, now=now)
    _raise_first(results)
    carried = ledger.carry_locks(
        session=session,
        debit_transfer_id=results[0].id,
        to_account_id=target,
        spent_minor=row.from_minor,
        received_minor=row.to_minor,
        transfer_id=results[1].id,
    )
    conversion = FxConversion(
        id=conversion_id,
        quote_id=row.id,
        user_id=user.id,
        from_transfer_id=results[0].id,
        to_transfer_id=results[1].id,
        locked_carried_minor=sum(lot.amount_minor for lot in carried),
        created_at=now,
    )
    session.add(conversion)
    session.flush()
    return conversion


def _spendable(session: Session, account_id: int, now: datetime) -> int:
    """What a conversion may take: total - pending (locked money included, R-TN-2)."""
    held = ledger.balance(session=session, account_id=account_id, now=now)
    return held.total_minor - held.pending_minor


def _raise_first(results: Sequence[ledger.TransferResult]) -> None:
    """The refusal of linked legs: the leg that failed (not the one failed with it)."""
    errors = [result.error for result in results if result.error is not None]
    if not errors:
        return
    own = [error for error in errors if error.code != "linked_transfer_failed"]
    raise (own or errors)[0]


def conversion_of(*, session: Session, user: User, conversion_id: str) -> FxConversion:
    if not ROW_ID.fullmatch(conversion_id):
        raise NotFound("no such conversion", code="conversion_not_found")
    row = session.scalars(
        select(FxConversion).where(
            FxConversion.id == conversion_id, FxConversion.user_id == user.id
        )
    ).first()
    if row is None:
        raise NotFound("no such conversion", code="conversion_not_found")
    return row


# --------------------------------------------------------------------------- reference prices


class ReferencePrices:
    """An asset's value in another asset from the operator's MID rates (no spread), through at
    most ``REFERENCE_HOPS_MAX`` pairs (BTC-equivalent and HKD-equivalent limits, issue #11).
    Load once per check: one read of the rates table."""

    def __init__(self, pairs: Sequence[PairRate]) -> None:
        self._edges: dict[str, list[tuple[str, Fraction]]] = {}
        for pair in pairs:
            self._edges.setdefault(pair.base, []).append((pair.quote, pair.mid_fraction))
            self._edges.setdefault(pair.quote, []).append((pair.base, 1 / pair.mid_fraction))

    @classmethod
    def load(cls, session: Session) -> ReferencePrices:
        return cls([pair_rate(row) for row in rates(session=session, limit=10_000)])

    def rate(self, from_code: str, to_code: str) -> Fraction | None:
        """Major units of ``to_code`` one major unit of ``from_code`` is worth (the fewest
        pairs chained), or None when no chain of rates joins them."""
        if from_code == to_code:
            return Fraction(1)
        seen = {from_code}
        frontier: deque[tuple[str, Fraction, int]] = deque([(from_code, Fraction(1), 0)])
        while frontier:
            code, value, hops = frontier.popleft()
            if hops >= REFERENCE_HOPS_MAX:
                continue
            for neighbour, rate in self._edges.get(code, []):
                if neighbour == to_code:
                    return value * rate
                if neighbour not in seen:
                    seen.add(neighbour)
                    frontier.append((neighbour, value * rate, hops + 1))
        return None

    def value_minor(self, amount: Money, target: Asset) -> Fraction | None:
        """``amount``'s exact value in ``target``'s minor units (the caller rounds: a limit
        counts it rounded up), or None when no rate joins the two assets."""
        rate = self.rate(amount.asset.code, target.code)
        if rate is None:
            return None
        return domain.exact_minor(
            amount.amount_minor, rate, from_scale=amount.asset.scale, to_scale=target.scale
        )


def reference_value_minor(
    *, session: Session, amount: Money, target: Asset, rounding: str = "up"
) -> int | None:
    """``amount`` in ``target``'s minor units at the mid rates, rounded ``up`` (what a limit
    counts) or ``down``; None without a chain of rates. E.g. the HKD- and BTC-equivalents of a
    crypto withdrawal for the limits engine."""
    exact = ReferencePrices.load(session).value_minor(amount, target)
    if exact is None:
        return None
    floor = exact.numerator // exact.denominator
    return floor if rounding == "down" or floor == exact else floor + 1


# The limits engine values amounts at the operator's mid rates where they join two assets,
# its settings' prices elsewhere (issue #11; limits is below fx, so fx plugs its rates in).
limits.use_reference_prices(ReferencePrices.load)
