"""Charges and refunds (R-MERCH-2, R-MERCH-3 search/export, R-XB-1). Services never commit.
``charge`` and ``refund`` move the money in the caller's unit of work (the POS page, a user
paying a QR, refunds: ``movements.service.run_once`` for the Idempotency-Key): a refused charge
rolls back with it, which gives a payment code back (its use is a row of that transaction,
``paycodes.service.resolve_and_consume``). The terminals' API splits a charge instead:
``payer_from(consume=False)`` and ``prepare_charge`` check it in the request, and the
group-commit batcher writes the code's use, the legs and ``PreparedCharge.write``'s rows in
its batch's one transaction (a refused charge deletes its code's use there: the code is given
back the same way).

Legs (all LINKED: every one or none, R-LEDGER-2), amounts in minor units:

- same currency: payer wallet → merchant account ``amount`` (code ``merchant_payment``, the
  limits guard on it); merchant account → operator fee account ``fee`` (``merchant_fee``).
  HK$100.00 at 80 bps: payer -100.00, merchant +99.20, fee account +0.80.
- cross-border (the payer's region currency differs from the merchant's, R-XB-1): payer wallet
  → operator FX account of the payer's currency ``payer_amount``; FX account of the merchant's
  currency → merchant ``amount``; merchant → fee account ``fee``. ``payer_amount`` is the least
  amount whose conversion at the live rate (the operator's mid and spread, what a quote of
  ``fx`` gives now) buys ``amount``: rounded UP, in the operator's favour by less than one
  minor unit, as every FX rounding is.

Fee rounding: ``fee = amount x bps / 10000`` rounded DOWN to the minor unit (the merchant never
pays more than its rate). Refund fee policy: the fee is refunded pro rata, cumulatively:
after refunds totalling R of a charge A with fee F, the fee account has returned
floor(F x R / A); a refund returns the difference to what was returned before, so a full
refund (in one or many parts) returns exactly F. A 40.00 refund of the 100.00 charge: payer
+40.00, merchant -39.68, fee account -0.32. A cross-border refund returns the payer's currency
pro rata of what the payer paid, the same way (floor of the cumulative share: a full refund
returns exactly what was paid; the FX difference is the operator's). Refunds are allowed within
``merchants.refund_window_days`` (180) of the charge and never exceed what is left: the charge's
row is locked (``FOR UPDATE``) while a refund is decided, so two racing refunds cannot both
take the last of it."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any, Final

from sqlalchemy import Select, String, and_, bindparam, case, select
from sqlalchemy.orm import Session, aliased

from strongroom import paging
from strongroom.db import utcnow
from strongroom.emv import EmvError, Field, decode, mpm
from strongroom.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InsufficientFunds,
    NotFound,
    ValidationFailed,
)
from strongroom.fx import domain as fx_domain
from strongroom.fx import service as fx
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import Balance, TransferSpec, balance_of
from strongroom.ledger.models import Account
from strongroom.limits import service as limits_engine
from strongroom.limits.rules import Operation
from strongroom.merchants import service as merchants
from strongroom.merchants import webhooks
from strongroom.merchants.models import Charge, DynamicQr, Merchant, Refund, WebhookEvent
from strongroom.money import AssetRegistry, Money, format_amount, parse_amount
from strongroom.notify import outbox
from strongroom.paycodes import service as paycodes
from strongroom.settings import Settings
from strongroom.tokens import service as tokens

PAYMENT_CODE: Final = "payment_code"
TOKEN: Final = "token"  # noqa: S105 (a payment method's name)
EMV: Final = "emv"
QR: Final = "qr"
COMPLETED: Final = "completed"
PARTIALLY_REFUNDED: Final = "partially_refunded"
REFUNDED: Final = "refunded"
STATUSES: Final = (COMPLETED, PARTIALLY_REFUNDED, REFUNDED)
CHARGE_ID: Final = "ch_"
CURSOR: Final = "charges"
PAGE_MAX: Final = 200
RECEIPT: Final = "merchants.payment_receipt"
REFUND_RECEIPT: Final = "merchants.refund_receipt"


class AssetNotAccepted(DomainError):
    code = "asset_not_accepted"
    status = 422


def fee_of(amount_minor: int, bps: int) -> int:
    """The discount-rate fee, rounded down to the minor unit."""
    return amount_minor * bps // 10_000


@dataclass(frozen=True, slots=True)
class Payer:
    """Who pays; ``code``: the payment code resolved but not yet used (``payer_from`` with
    ``consume=False``: the caller writes its use with the money, ``paycodes.use_row``)."""

    user: User
    method: str
    token_last4: str | None = None
    code: paycodes.Resolved | None = None
    wallet: Balance | None = None
    """The payer's wallet in their currency, read with the user (``payer_from``); None when
    not read or when they have none (``wallet_read`` tells which)."""
    wallet_read: bool = False


@dataclass(frozen=True, slots=True)
class PreparedCharge:
    """A checked charge, ready to move: its linked legs (the payment first) and ``write``, the
    writer of its rows (the charge, the receipt email rendered already, the webhook event),
    which only adds rows: the group commit calls it in the transaction that moves the money."""

    charge_id: str
    status: str
    legs: tuple[TransferSpec, ...]
    write: Callable[[Session], Charge]

    def on_commit(self, session: Session, _transfer_id: str) -> None:
        """``write`` as the group commit's writer (``movements.batcher.OnCommit``)."""
        self.write(session)


# --------------------------------------------------------------------------- who pays


def payer_from(
    *,
    session: Session,
    merchant: Merchant,
    settings: Settings,
    payment_code: str | None,
    token: str | None,
    emv_payload: str | None,
    consume: bool = True,
    now: datetime | None = None,
) -> Payer:
    """The payer of a terminal's charge: exactly one of a payment code (consumed in this
    transaction; with ``consume=False`` only resolved, its use left to the caller: see
    ``Payer.code``), a virtual card number (the card's user; a card restricted to another
    merchant or suspended is refused) or an EMV payload carrying a payment code (a merchant
    account template whose sub-field 00 is ``merchants.code_account_identifier`` and 01 the
    code)."""
    given = [v for v in (payment_code, token, emv_payload) if v is not None]
    if len(given) != 1:
        raise ValidationFailed(
            "give exactly one of payment_code, token, emv_payload", code="one_payment_method"
        )
    currency = merchants.currency_of(merchant)
    if token is not None:
        owner = tokens.resolve(
            session=session, number=token, settings=settings, merchant_id=merchant.id
        )
        user, wallet = _payer_view(session, owner.user_id, currency, now)
        return Payer(user, TOKEN, owner.last4, wallet=wallet, wallet_read=True)
    method = PAYMENT_CODE
    if emv_payload is not None:
        payment_code = _code_in(emv_payload, settings)
        method = EMV
    assert payment_code is not None
    resolve = paycodes.resolve_and_consume if consume else paycodes.resolve
    resolved = resolve(
        session=session,
        code=payment_code,
        settings=settings.payment_codes,
        keyring=settings.auth.vault,
        now=now,
    )
    user, wallet = _payer_view(session, resolved.user_id, currency, now)
    code = None if consume else resolved
    return Payer(user, method, code=code, wallet=wallet, wallet_read=True)


def _code_in(payload: str, settings: Settings) -> str:
    decoded = decode(payload)
    for field in decoded.fields:
        if "26" <= field.id <= "51" and field.fields:
            identifier = field.get("00")
            code = field.get("01")
            if (
                identifier is not None
                and identifier.value == settings.merchants.code_account_identifier
                and code is not None
                and code.value is not None
            ):
                return code.value
    raise EmvError("this EMV payload carries no payment code of this wallet", code="emv_no_code")


def _payer_view(
    session: Session, user_id: str, merchant_currency: str, now: datetime | None
) -> tuple[User, Balance | None]:
    """The payer and their wallet in their region's currency (the merchant's for a region
    without one) with its balance fields, in ONE statement (issue #13: these were four round
    trips); ``wallet_users_only`` for an operator."""
    rows = session.execute(
        _PAYER_VIEW, {"user_id": user_id, "merchant_currency": merchant_currency}
    ).all()
    if not rows:
        raise NotFound("no such user", code="user_not_found")
    user, wallet_id, asset, debits_posted, credits_posted, debits_pending = rows[0]
    if user.operator_role is not None:
        raise Forbidden("an operator account holds no wallet", code="wallet_users_only")
    if wallet_id is None:
        return user, None
    wallet = balance_of(
        account_id=wallet_id,
        asset=asset,
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        lots=(),  # a merchant payment may use locked money (R-TN-2): no lots to read
        now=now or utcnow(),
    )
    return user, wallet


def _payer_view_statement() -> Select[User, int, str, int, int, int]:
    wallet = aliased(Account, name="wallet")
    currency = case(
        merchants.REGION_CURRENCY,
        value=User.region,
        else_=bindparam("merchant_currency", type_=String),
    )
    return (
        select(
            User,
            wallet.id,
            wallet.asset,
            wallet.debits_posted,
            wallet.credits_posted,
            wallet.debits_pending,
        )
        .outerjoin(
            wallet,
            and_(
                wallet.owner_type == ledger.USER,
                wallet.owner_id == User.id,
                wallet.kind == "wallet",
                wallet.asset == currency,
            ),
        )
        .where(User.id == bindparam("user_id", type_=String))
    )


_PAYER_VIEW = _payer_view_statement()  # built once; the values are bound per call


# --------------------------------------------------------------------------- charges


def charge(
    *,
    session: Session,
    merchant: Merchant,
    payer: Payer,
    amount: Money,
    settings: Settings,
    assets: AssetRegistry,
    actor: str,
    now: datetime | None = None,
) -> Charge:
    """Move a payment to ``merchant`` with its fee leg (and its FX legs when cross-border) in
    the caller's transaction: ``prepare_charge``, its rows, then its legs."""
    now = now or utcnow()
    prepared = prepare_charge(
        session=session,
        merchant=merchant,
        payer=payer,
        amount=amount,
        settings=settings,
        assets=assets,
        actor=actor,
        now=now,
    )
    row = prepared.write(session)
    session.flush()
    # the legs last: the merchant's and the fee account's row locks are held from here to the
    # commit only (R-LEDGER-6: a hot account), everything else of the charge is written already
    _apply(session, list(prepared.legs), now)
    return row


def prepare_charge(
    *,
    session: Session,
    merchant: Merchant,
    payer: Payer,
    amount: Money,
    settings: Settings,
    assets: AssetRegistry,
    actor: str,
    now: datetime | None = None,
) -> PreparedCharge:
    """Check a charge and build what it moves and writes: a receipt email to the payer and a
    ``charge.succeeded`` webhook event go with it. Refusals: ``asset_not_accepted``,
    ``insufficient_funds``, ``rate_unavailable``, the limits engine's (``merchant_payment``:
    locked money may be used, R-TN-2). Writes nothing but accounts opened on first use; the
    limits are checked again by the ledger (the guard on the payment leg) under its locks."""
    now = now or utcnow()
    user = payer.user
    verification.require_verified(user)
    currency = merchants.currency_of(merchant)
    if amount.asset.code != currency:
        raise AssetNotAccepted(
            f"this merchant takes {currency}", asset=amount.asset.code, accepted=currency
        )
    rate, payer_amount = _priced(session, user, amount, assets)
    payer_currency, payer_minor = payer_amount.asset.code, payer_amount.amount_minor
    if payer.wallet_read and (payer.wallet is None or payer.wallet.asset == payer_currency):
        held = payer.wallet
        source = None if held is None else held.account_id
    else:
        source = ledger.user_wallet_id_if_any(
            session=session, user_id=user.id, asset=payer_currency
        )
        held = (
            None if source is None else ledger.balance(session=session, account_id=source, now=now)
        )
    if source is None or held is None or payer_minor > held.total_minor - held.pending_minor:
        raise InsufficientFunds(
            "insufficient funds",
            asset=payer_currency,
            available_minor=str(
                0 if held is None else max(held.total_minor - held.pending_minor, 0)
            ),
            requested_minor=str(payer_minor),
        )
    limits_engine.check(
        session=session,
        user=user,
        operation=Operation.MERCHANT_PAYMENT,
        amount=payer_amount,
        settings=settings,
        account_id=source,
        now=now,
    )
    fee = fee_of(amount.amount_minor, merchant.discount_rate_bps)
    target = merchants.account_id(session=session, merchant=merchant, asset=currency)
    charge_id = f"{CHARGE_ID}{uuid.uuid4().hex[:29]}"
    guard = limits_engine.guard(user=user, operation=Operation.MERCHANT_PAYMENT, settings=settings)
    note = f"{merchant.id} {charge_id}"
    legs: list[TransferSpec] = []
    if rate is None:
        legs.append(
            _leg(
                f"{charge_id}.pay",
                source,
                target,
                currency,
                payer_minor,
                "merchant_payment",
                note,
                guard,
            )
        )
    else:
        fx_from = ledger.operator_account(
            session=session, kind=fx.FX_ACCOUNT, asset=payer_currency
        ).id
        fx_to = ledger.operator_account(session=session, kind=fx.FX_ACCOUNT, asset=currency).id
        legs.append(
            _leg(
                f"{charge_id}.pay",
                source,
                fx_from,
                payer_currency,
                payer_minor,
                "merchant_payment",
                note,
                guard,
            )
        )
        legs.append(
            _leg(f"{charge_id}.fx", fx_to, target, currency, amount.amount_minor, "fx", note)
        )
    if fee > 0:
        fee_account = ledger.operator_account(
            session=session, kind=merchants.FEE_KIND, asset=currency
        ).id
        legs.append(
            _leg(f"{charge_id}.fee", target, fee_account, currency, fee, "merchant_fee", note)
        )
    fields: dict[str, Any] = {
        "id": charge_id,
        "merchant_id": merchant.id,
        "payer_user_id": user.id,
        "method": payer.method,
        "token_last4": payer.token_last4,
        "asset": currency,
        "amount_minor": amount.amount_minor,
        "fee_minor": fee,
        "payer_asset": payer_currency,
        "payer_amount_minor": payer_minor,
        "fx_rate": None if rate is None else fx_domain.rate_text(rate),
        "refunded_minor": 0,
        "fee_refunded_minor": 0,
        "payer_refunded_minor": 0,
        "status": COMPLETED,
        "transfer_id": f"{charge_id}.pay",
        "actor": actor,
        "created_at": now,
    }
    receipt = outbox.defer_to_user(
        user=user,
        template_id=RECEIPT,
        context={
            "amount": _shown(payer_amount),
            "merchant": merchant.name,
            "charged": _shown(amount) if rate is not None else None,
            "charge_id": charge_id,
            "at": now,
        },
    )
    event = webhooks.event_fields(
        merchant=merchant, event_type="charge.succeeded", data=charge_data(Charge(**fields), assets)
    )

    def write(current: Session) -> Charge:
        # fresh rows on every call: a batch that failed is retried job by job in new sessions
        row = Charge(**fields)
        current.add(row)
        outbox.add_prepared(session=current, email=receipt, now=now)
        if event is not None:
            current.add(WebhookEvent(**event))
        return row

    return PreparedCharge(charge_id=charge_id, status=COMPLETED, legs=tuple(legs), write=write)


def payer_cost(*, session: Session, user: User, amount: Money, assets: AssetRegistry) -> Money:
    """What ``user`` pays for ``amount`` at a merchant, as ``charge`` works it out now: the same
    amount, or cross-border (R-XB-1) their region's currency at the live rate
    (``rate_unavailable`` without one). A quote to show: the rate may move before paying."""
    return _priced(session, user, amount, assets)[1]


def _priced(
    session: Session, user: User, amount: Money, assets: AssetRegistry
) -> tuple[Fraction | None, Money]:
    currency = amount.asset.code
    payer_currency = merchants.REGION_CURRENCY.get(user.region, currency)
    if payer_currency == currency:
        return None, amount
    payer_asset = assets.get(payer_currency)
    rate, payer_minor = _cross_border(session, amount, payer_asset)
    return rate, Money(payer_minor, payer_asset)


def _cross_border(session: Session, amount: Money, payer_asset: object) -> tuple[Fraction, int]:
    from strongroom.money import Asset

    assert isinstance(payer_asset, Asset)
    pair = fx.find_pair(session=session, first=payer_asset.code, second=amount.asset.code)
    if pair is None:
        raise fx.RateUnavailable(
            f"no rate between {payer_asset.code} and {amount.asset.code}",
            from_asset=payer_asset.code,
            to_asset=amount.asset.code,
        )
    rate = pair.user_rate(payer_asset.code)
    per_minor = rate * Fraction(10**amount.asset.scale, 10**payer_asset.scale)
    needed = Fraction(amount.amount_minor) / per_minor
    payer_minor = -(-needed.numerator // needed.denominator)  # rounded up
    while (
        fx_domain.convert_minor(
            payer_minor, rate, from_scale=payer_asset.scale, to_scale=amount.asset.scale
        )
        < amount.amount_minor
    ):  # never: the ceiling buys enough; kept as the proof
        payer_minor += 1
    return rate, payer_minor


def _leg(
    transfer_id: str,
    debit: int,
    credit: int,
    asset: str,
    amount_minor: int,
    code: str,
    note: str,
    guard: limits_engine.LimitGuard | None = None,
) -> TransferSpec:
    return TransferSpec(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        asset=asset,
        amount_minor=amount_minor,
        code=code,
        note=note,
        linked=True,
        guard=guard,
    )


def _apply(session: Session, legs: list[TransferSpec], now: datetime) -> None:
    last = legs[-1]
    legs[-1] = TransferSpec(
        id=last.id,
        debit_account_id=last.debit_account_id,
        credit_account_id=last.credit_account_id,
        asset=last.asset,
        amount_minor=last.amount_minor,
        code=last.code,
        note=last.note,
        linked=False,
        guard=last.guard,
    )
    results = ledger.create_transfers(session=session, specs=legs, now=now)
    errors = [r.error for r in results if r.error is not None]
    if errors:
        own = [e for e in errors if e.code != "linked_transfer_failed"]
        raise (own or errors)[0]


def _shown(money: Money) -> str:
    return f"{money.asset.code} {format_amount(money.amount_minor, money.asset.scale)}"


def charge_data(row: Charge, assets: AssetRegistry) -> dict[str, object]:
    """A charge as the API, the CSV export and the webhooks show it."""
    scale = assets.get(row.asset).scale
    payer_scale = assets.get(row.payer_asset).scale
    return {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "status": row.status,
        "method": row.method,
        "token_last4": row.token_last4,
        "asset": row.asset,
        "amount": format_amount(row.amount_minor, scale),
        "fee": format_amount(row.fee_minor, scale),
        "net": format_amount(row.amount_minor - row.fee_minor, scale),
        "refunded": format_amount(row.refunded_minor, scale),
        "payer_asset": row.payer_asset,
        "payer_amount": format_amount(row.payer_amount_minor, payer_scale),
        "fx_rate": row.fx_rate,
        "created_at": row.created_at.isoformat(),
    }


# --------------------------------------------------------------------------- merchant QR


def qr_payload(
    *,
    session: Session,
    merchant: Merchant,
    settings: Settings,
    assets: AssetRegistry,
    amount: object | None,
    asset: object | None,
    now: datetime | None = None,
) -> str:
    """A merchant-presented code (EMV MPM): static without an amount (the payer types it),
    dynamic with one (carried in field 54, paid once: its id is the reference label 62/05)."""
    currency = merchants.currency_of(merchant)
    if asset is not None and asset != currency:
        raise AssetNotAccepted(
            f"this merchant takes {currency}", asset=str(asset)[:10], accepted=currency
        )
    shown: str | None = None
    reference: str | None = None
    if amount is not None:
        money = assets.money(amount, currency)
        shown = format_amount(money.amount_minor, money.asset.scale)
        reference = f"qr{uuid.uuid4().hex[:20]}"
        session.add(
            DynamicQr(
                id=reference,
                merchant_id=merchant.id,
                asset=currency,
                amount_minor=money.amount_minor,
                created_at=now or utcnow(),
            )
        )
        session.flush()
    return mpm.build(
        account_identifier=settings.merchants.qr_account_identifier,
        account_fields=(Field("01", merchant.id),),
        mcc=merchant.mcc,
        currency=merchants.CURRENCY_NUMERIC[currency],
        country=merchant.region,
        name=merchant.name[: mpm.NAME_MAX_CHARS],
        city=merchant.city,
        amount=shown,
        reference=reference,
    )


@dataclass(frozen=True, slots=True)
class QrToPay:
    """A merchant-presented code read for its payer: the merchant, and the amount a dynamic
    code carries (``dynamic`` is its row, locked when read for paying); ``amount`` is None for
    a static code (the payer types it)."""

    merchant: Merchant
    amount: Money | None
    dynamic: DynamicQr | None


def read_qr(
    *,
    session: Session,
    payload: str,
    settings: Settings,
    assets: AssetRegistry,
    lock: bool = False,
) -> QrToPay:
    """What a merchant's code asks a payer to pay, checked as paying it checks (the Lite app's
    confirmation shows this before anything moves): ``emv_*`` for a broken or foreign code,
    ``merchant_suspended``, ``qr_used`` for a dynamic code paid already."""
    code = mpm.read(decode(payload))
    merchant_id = None
    for account in code.accounts:
        identifier = account.get("00")
        found = account.get("01")
        if identifier is not None and identifier.value == settings.merchants.qr_account_identifier:
            merchant_id = found.value if found is not None else None
    if merchant_id is None:
        raise EmvError("this code names no merchant of this wallet", code="emv_unknown_merchant")
    try:
        merchant = merchants.get(session=session, merchant_id=merchant_id)
    except NotFound:
        raise EmvError(
            "this code names no merchant of this wallet", code="emv_unknown_merchant"
        ) from None
    if merchant.status != "active":
        raise Forbidden("this merchant is suspended", code="merchant_suspended")
    currency = merchants.currency_of(merchant)
    if code.currency != merchants.CURRENCY_NUMERIC[currency]:
        raise EmvError("the code's currency is not the merchant's", code="emv_currency_invalid")
    if not code.dynamic:
        return QrToPay(merchant=merchant, amount=None, dynamic=None)
    qr = (
        session.get(DynamicQr, code.reference or "", with_for_update=lock)
        if code.reference
        else None
    )
    if qr is None or qr.merchant_id != merchant.id or code.amount is None:
        raise EmvError("this dynamic code is not one of this merchant's", code="emv_unknown_code")
    if qr.charge_id is not None:
        raise Conflict("this code was paid already", code="qr_used")
    scale = assets.get(currency).scale
    if parse_amount(code.amount, scale) != qr.amount_minor:
        raise EmvError("the code's amount was changed", code="emv_amount_invalid")
    return QrToPay(
        merchant=merchant, amount=Money(qr.amount_minor, assets.get(currency)), dynamic=qr
    )


def pay_qr(
    *,
    session: Session,
    user: User,
    payload: str,
    amount: object | None,
    settings: Settings,
    assets: AssetRegistry,
) -> Charge:
    """A user pays a merchant's code: a static one needs ``amount`` (``amount_required``); a
    dynamic one carries it (another ``amount`` is refused: ``amount_mismatch``) and is paid at
    most once (``qr_used``)."""
    if user.operator_role is not None:
        raise Forbidden("an operator account holds no wallet", code="wallet_users_only")
    read = read_qr(session=session, payload=payload, settings=settings, assets=assets, lock=True)
    merchant, qr = read.merchant, read.dynamic
    currency = merchants.currency_of(merchant)
    if read.amount is not None:
        if (
            amount is not None
            and assets.money(amount, currency).amount_minor != read.amount.amount_minor
        ):
            raise ValidationFailed("the code carries another amount", code="amount_mismatch")
        money = read.amount
    else:
        if amount is None:
            raise ValidationFailed("a static code needs the amount", code="amount_required")
        money = assets.money(amount, currency)
    row = charge(
        session=session,
        merchant=merchant,
        payer=Payer(user, QR),
        amount=money,
        settings=settings,
        assets=assets,
        actor=user.id,
    )
    if qr is not None:
        qr.charge_id = row.id
        session.flush()
    return row


# --------------------------------------------------------------------------- refunds


def refund(
    *,
    session: Session,
    merchant: Merchant,
    charge_id: str,
    amount: object,
    settings: Settings,
    assets: AssetRegistry,
    actor: str,
    now: datetime | None = None,
) -> Refund:
    """Refund part or all of one of ``merchant``'s charges (see the module's fee policy):
    ``charge_not_found`` (404: unknown or another merchant's), ``refund_window_closed`` (409),
    ``refund_exceeds_charge`` (422, ``details.refundable``)."""
    now = now or utcnow()
    row = _own_charge(session, merchant, charge_id, lock=True)
    asset = assets.get(row.asset)
    money = assets.money(amount, row.asset)
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=now.tzinfo)
    if now - created > timedelta(days=settings.merchants.refund_window_days):
        raise Conflict(
            f"refunds are possible within {settings.merchants.refund_window_days} days",
            code="refund_window_closed",
        )
    left = row.amount_minor - row.refunded_minor
    if money.amount_minor > left:
        raise InsufficientFunds(
            "the refund is more than what is left of the charge",
            code="refund_exceeds_charge",
            refundable=format_amount(left, asset.scale),
        )
    refunded_after = row.refunded_minor + money.amount_minor
    fee_part = row.fee_minor * refunded_after // row.amount_minor - row.fee_refunded_minor
    payer_part = (
        row.payer_amount_minor * refunded_after // row.amount_minor - row.payer_refunded_minor
    )
    payer = session.get_one(User, row.payer_user_id)
    wallet = ledger.user_wallet_id(session=session, user_id=payer.id, asset=row.payer_asset)
    target = merchants.account_id(session=session, merchant=merchant, asset=row.asset)
    fee_account = ledger.operator_account(
        session=session, kind=merchants.FEE_KIND, asset=row.asset
    ).id
    refund_id = f"rf_{uuid.uuid4().hex[:29]}"
    note = f"{merchant.id} {row.id}"
    legs: list[TransferSpec] = []
    if fee_part > 0:
        legs.append(
            _leg(f"{refund_id}.fee", fee_account, target, row.asset, fee_part, "merchant_fee", note)
        )
    if row.payer_asset == row.asset:
        legs.append(
            _leg(
                f"{refund_id}.pay",
                target,
                wallet,
                row.asset,
                money.amount_minor,
                "merchant_refund",
                note,
            )
        )
    else:
        fx_in = ledger.operator_account(session=session, kind=fx.FX_ACCOUNT, asset=row.asset).id
        fx_out = ledger.operator_account(
            session=session, kind=fx.FX_ACCOUNT, asset=row.payer_asset
        ).id
        legs.append(
            _leg(f"{refund_id}.fx", target, fx_in, row.asset, money.amount_minor, "fx", note)
        )
        legs.append(
            _leg(
                f"{refund_id}.pay",
                fx_out,
                wallet,
                row.payer_asset,
                payer_part,
                "merchant_refund",
                note,
            )
        )
    row.refunded_minor = refunded_after
    row.fee_refunded_minor += fee_part
    row.payer_refunded_minor += payer_part
    row.status = REFUNDED if refunded_after == row.amount_minor else PARTIALLY_REFUNDED
    out = Refund(
        id=refund_id,
        charge_id=row.id,
        merchant_id=merchant.id,
        amount_minor=money.amount_minor,
        fee_minor=fee_part,
        payer_amount_minor=payer_part,
        transfer_id=f"{refund_id}.pay",
        actor=actor,
        created_at=now,
    )
    session.add(out)
    payer_asset = assets.get(row.payer_asset)
    outbox.send_to_user(
        session=session,
        user=payer,
        template_id=REFUND_RECEIPT,
        context={
            "amount": _shown(Money(payer_part, payer_asset)),
            "merchant": merchant.name,
            "charge_id": row.id,
            "refund_id": refund_id,
            "at": now,
        },
        now=now,
    )
    webhooks.enqueue(
        session=session,
        merchant=merchant,
        event_type="refund.succeeded",
        data={
            "id": refund_id,
            "charge_id": row.id,
            "asset": row.asset,
            "amount": format_amount(money.amount_minor, asset.scale),
            "fee_returned": format_amount(fee_part, asset.scale),
            "charge_status": row.status,
        },
    )
    session.flush()
    _apply(session, legs, now)  # the legs last, as a charge's
    return out


def _own_charge(session: Session, merchant: Merchant, charge_id: str, lock: bool = False) -> Charge:
    if not (charge_id.startswith(CHARGE_ID) and len(charge_id) <= 32):
        raise NotFound("no such charge", code="charge_not_found")
    query = select(Charge).where(Charge.id == charge_id, Charge.merchant_id == merchant.id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("no such charge", code="charge_not_found")
    return row


def get_charge(*, session: Session, merchant: Merchant, charge_id: str) -> Charge:
    return _own_charge(session, merchant, charge_id)


# --------------------------------------------------------------------------- the payer's view


PAY_LEG: Final = ".pay"


def payer_transfer_id(charge_id: str) -> str:
    """The leg that took a charge's money from its payer's wallet (their history's row)."""
    return f"{charge_id}{PAY_LEG}"


@dataclass(frozen=True, slots=True)
class Paid:
    """A charge as its payer sees it: the shop, the charge, the refunds made against it (oldest
    first), and ``refund``: the refund whose leg the payer opened, if they opened one."""

    merchant: Merchant
    charge: Charge
    refunds: list[Refund]
    refund: Refund | None


def paid_by(*, session: Session, user: User, transfer_id: str) -> Paid | None:
    """The charge or refund behind a transfer of ``user``'s history (a payer leg ``ch_….pay``
    or ``rf_….pay``), or None: not a charge's, or not this user's (their receipt shows the
    transfer alone, and another user's is refused before this by the ledger's check)."""
    if not transfer_id.endswith(PAY_LEG) or len(transfer_id) > 64:
        return None
    row_id = transfer_id.removesuffix(PAY_LEG)
    refund = session.get(Refund, row_id) if row_id.startswith("rf_") else None
    charge_id = refund.charge_id if refund is not None else row_id
    if not charge_id.startswith(CHARGE_ID):
        return None
    row = session.scalars(select(Charge).where(Charge.id == charge_id)).first()
    if row is None or row.payer_user_id != user.id:
        return None
    refunds = session.scalars(
        select(Refund).where(Refund.charge_id == row.id).order_by(Refund.created_at, Refund.id)
    ).all()
    merchant = session.get_one(Merchant, row.merchant_id)
    return Paid(merchant=merchant, charge=row, refunds=list(refunds), refund=refund)


# --------------------------------------------------------------------------- search, export


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Charge]
    next_cursor: str | None


def _query(merchant: Merchant, since: datetime | None, until: datetime | None, status: str | None):  # type: ignore[no-untyped-def]
    if status is not None and status not in STATUSES:
        raise ValidationFailed(f"status: one of {', '.join(STATUSES)}", code="invalid_status")
    query = select(Charge).where(Charge.merchant_id == merchant.id)
    if since is not None:
        query = query.where(Charge.created_at >= since)
    if until is not None:
        query = query.where(Charge.created_at < until)
    if status is not None:
        query = query.where(Charge.status == status)
    return query.order_by(Charge.seq.desc())


def search(
    *,
    session: Session,
    merchant: Merchant,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """The merchant's charges, newest first, keyset paged (``next_cursor``)."""
    query = _query(merchant, since, until, status)
    if cursor:
        query = query.where(Charge.seq < paging.decode(CURSOR, cursor))
    rows = list(session.scalars(query.limit(min(limit, PAGE_MAX) + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, paging.encode(CURSOR, rows[-1].seq) if more and rows else None)


CSV_COLUMNS: Final = (
    "id",
    "created_at",
    "status",
    "method",
    "token_last4",
    "asset",
    "amount",
    "fee",
    "net",
    "refunded",
    "payer_asset",
    "payer_amount",
    "fx_rate",
)


def export_csv(
    *,
    session: Session,
    merchant: Merchant,
    assets: AssetRegistry,
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str | None = None,
) -> Iterator[str]:
    """The charges as CSV (a header line, then one line per charge, newest first; at most
    ``merchants.export_rows_max`` rows, read in pages)."""
    query = _query(merchant, since, until, status).limit(settings.merchants.export_rows_max)
    yield _line(CSV_COLUMNS)
    for row in session.scalars(query.execution_options(yield_per=500)):
        data = charge_data(row, assets)
        yield _line(tuple("" if data[c] is None else str(data[c]) for c in CSV_COLUMNS))


def _line(values: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        ["'" + v if v[:1] in ("=", "+", "-", "@") else v for v in values]
    )
    return buffer.getvalue()
