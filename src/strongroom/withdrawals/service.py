"""Withdrawals (R-FUND-2, R-FUND-3, R-KYC-6, R-TN-2, R-SEC-5): fiat to a linked bank account,
crypto to an address of the user's address book.

**The request** (``request``), refused before anything moves, in this order: the destination
(``destination_not_found``, ``asset_mismatch``, ``address_not_whitelisted`` while whitelist mode
is on), the 24-hour freeze after a security change (403 ``withdrawals_frozen``
``{frozen_until}``), the limits engine's one check (``fiat_withdrawal`` / ``crypto_withdrawal``:
``kyc_required``, ``funds_locked``, ``limit_exceeded``), the quick withdrawal limit (the user's,
default 500 USDT-equivalent: above it the 2FA code is required when 2FA is on; **without 2FA
above it the withdrawal is refused** with 403 ``two_factor_required``, decided here: SPEC says
2FA is required above the limit, so a user without 2FA withdraws up to the limit only). Then the
money: a PENDING ledger transfer wallet -> the operator's payout clearing account (available
drops at once), with the limits guard re-checked in the applying transaction.

**The payout** (``process_payouts``, the worker's sweep, bounded per run; rows taken ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, so several workers share the work): the attempt is committed
(``payout_state`` ``sent`` with its reference) BEFORE the connector is called; then, holding the
row, the connector is called (``send`` the first time, ``poll`` about the same reference after a
restart or a time-out) and its answer applied: paid -> the pending transfer is posted
(``completed``), failed -> voided (``failed``: the money returns); either way the user is
emailed. A second confirmation (the sandbox's digit 9) changes nothing. A poll answered
"unknown reference" (the send never reached the connector: a crash between recording the
attempt and the connector's receipt, or a send lost on the way) puts the payout in ``resend``:
the next sweep records and sends it again under the same payout id, which the connector dedupes
(so it can never pay twice); after ``funding.payout_sends_max`` sends it is ``stuck``, left
pending for an operator (the console's pending payouts), never voided on a guess.

Services never commit except ``process_payouts``, which owns its units of work.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from strongroom.banking import service as banking
from strongroom.db import is_postgres, unit_of_work, utcnow
from strongroom.errors import Conflict, Forbidden, NotFound, ValidationFailed
from strongroom.funding.connectors import (
    PayoutAnswer,
    PayoutStatus,
    SandboxPayoutConnector,
    payout_connector,
)
from strongroom.identity import audit, two_factor, verification
from strongroom.identity import service as identity
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.errors import TwoFactorRequired
from strongroom.identity.models import User
from strongroom.identity.step_up import StepUp
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.limits import service as limits
from strongroom.limits.rules import Operation
from strongroom.money import Money, format_amount
from strongroom.notify import outbox
from strongroom.settings import Settings
from strongroom.withdrawals.models import Withdrawal, WithdrawalAddress, WithdrawalPreference

log = logging.getLogger("strongroom.withdrawals")

FIAT: Final = "fiat"
CRYPTO: Final = "crypto"
PENDING: Final = "pending"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
QUEUED: Final = "queued"
SENT: Final = "sent"
RESEND: Final = "resend"
"""The connector answered "unknown reference": the next sweep records a new send and sends
again under the same payout id (the connector dedupes by it, ``PayoutConnector``)."""
STUCK: Final = "stuck"
"""Still unknown to the connector after ``funding.payout_sends_max`` sends: the worker leaves it
(the money stays pending, never voided on a guess) for an operator (the console's pending
payouts)."""
PAID: Final = "paid"
TRANSFER_CODE: Final = "withdrawal"
"""The limits engine's journal code of both withdrawal operations (``limits.rules.JOURNAL``)."""
CLEARING: Final = "payout_clearing"
QUICK_LIMIT_DEFAULT: Final = "500"
QUICK_LIMIT_UNIT: Final = "USDT"
ADDRESS_PATTERN: Final = re.compile(r"[A-Za-z0-9]{8,128}")
LABEL_MAX_CHARS: Final = 60
PAUSE_ENV: Final = "STRONGROOM_TEST_PAYOUT_PAUSE_FILE"
"""A test hook: when set, the worker writes this file after the connector answered and before
the answer is applied, then waits there (so a test can ``kill -9`` it between "payout sent"
and "posted"). Never set it in production."""
PAUSE_AT_ENV: Final = "STRONGROOM_TEST_PAYOUT_PAUSE_AT"
"""Where the ``PAUSE_ENV`` hook waits: ``answered`` (the default, as above) or ``sending``
(after the attempt is committed, before the connector is called: the send never arrives)."""


class WithdrawalsFrozen(Forbidden):
    code = "withdrawals_frozen"


def transfer_id_of(withdrawal_id: str) -> str:
    return f"withdrawal:{withdrawal_id}"


def masked_destination(withdrawal: Withdrawal) -> str:
    return masked(withdrawal.kind, withdrawal.destination)


def masked(kind: str, destination: str) -> str:
    if kind == FIAT:
        return banking.masked(destination)
    return destination[:6] + "..." + destination[-4:]


# --------------------------------------------------------------------------- preferences


@dataclass(frozen=True, slots=True)
class Preferences:
    whitelist_only: bool
    quick_limit: str  # USDT-equivalent


def preferences(*, session: Session, user: User) -> Preferences:
    row = session.get(WithdrawalPreference, user.id)
    if row is None:
        return Preferences(whitelist_only=False, quick_limit=QUICK_LIMIT_DEFAULT)
    return Preferences(whitelist_only=row.whitelist_only, quick_limit=row.quick_limit)


def _quick_limit(value: str) -> str:
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        parsed = Decimal(-1)
    if not parsed.is_finite() or parsed < 0 or parsed > Decimal(10**12) or "e" in value.lower():
        raise ValidationFailed(
            "quick_withdrawal_limit is a decimal amount of USDT from 0 to 1000000000000",
            code="invalid_quick_limit",
        )
    return format(parsed.normalize(), "f") if parsed != 0 else "0"


def set_preferences(
    *,
    session: Session,
    user: User,
    whitelist_only: bool | None,
    quick_limit: str | None,
    proof: StepUp,
    settings: Settings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Preferences:
    """Change whitelist mode or the quick withdrawal limit after the step-up: a security change
    (R-SEC-5: withdrawals freeze for 24 hours, the user is emailed). Nothing changed: no
    freeze."""
    checked = None if quick_limit is None else _quick_limit(quick_limit)
    proof.require(user)
    now = now or utcnow()
    current = preferences(session=session, user=user)
    wanted = Preferences(
        whitelist_only=current.whitelist_only if whitelist_only is None else whitelist_only,
        quick_limit=current.quick_limit if checked is None else checked,
    )
    if wanted == current:
        return current
    row = session.get(WithdrawalPreference, user.id)
    if row is None:
        row = WithdrawalPreference(user_id=user.id)
        session.add(row)
    row.whitelist_only = wanted.whitelist_only
    row.quick_limit = wanted.quick_limit
    row.updated_at = now
    changes = []
    if wanted.whitelist_only != current.whitelist_only:
        changes.append("withdrawal address whitelist " + ("on" if wanted.whitelist_only else "off"))
    if wanted.quick_limit != current.quick_limit:
        changes.append(f"quick withdrawal limit {wanted.quick_limit} {QUICK_LIMIT_UNIT}")
    identity.record_security_change(
        session=session,
        user=user,
        action="withdrawals.preferences_changed",
        change=", ".join(changes),
        settings=settings.auth,
        origin=origin,
        now=now,
    )
    return wanted


# --------------------------------------------------------------------------- address book


def check_address(*, asset: str, address: str, label: str | None, settings: Settings) -> str:
    """The formats of a new address, writing nothing: a crypto asset, 8-128 letters/digits."""
    kind = limits.prices_of(settings).kind(asset)
    if kind != CRYPTO:
        raise ValidationFailed(
            f"{asset} is not a crypto asset: fiat goes to a linked bank account",
            code="asset_not_crypto",
        )
    cleaned = address.strip()
    if not ADDRESS_PATTERN.fullmatch(cleaned):
        raise ValidationFailed(
            "an address is 8-128 letters and digits", code="invalid_address", min=8, max=128
        )
    if label is not None and len(label) > LABEL_MAX_CHARS:
        raise ValidationFailed(
            f"a label is at most {LABEL_MAX_CHARS} characters", code="invalid_label"
        )
    return cleaned


def add_address(
    *,
    session: Session,
    user: User,
    asset: str,
    address: str,
    label: str | None,
    whitelisted: bool,
    proof: StepUp,
    settings: Settings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> WithdrawalAddress:
    """Add an address after the step-up (R-SEC-8: a withdrawal destination). Adding it to the
    whitelist is a security change (R-SEC-5: freeze and email); a plain address is not (while
    whitelist mode is on it cannot be used)."""
    cleaned = check_address(asset=asset, address=address, label=label, settings=settings)
    proof.require(user)
    now = now or utcnow()
    row = WithdrawalAddress(
        user_id=user.id,
        asset=asset,
        address=cleaned,
        label=(label or "").strip() or None,
        whitelisted=whitelisted,
        created_at=now,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        raise Conflict("this address is in your address book", code="address_exists") from error
    details = {"address_id": row.id, "asset": asset, "address": masked(CRYPTO, cleaned)}
    if whitelisted:
        identity.record_security_change(
            session=session,
            user=user,
            action="withdrawals.address_whitelisted",
            change=f"withdrawal address {masked(CRYPTO, cleaned)} ({asset}) whitelisted",
            settings=settings.auth,
            origin=origin,
            now=now,
        )
    else:
        audit.record(
            session=session,
            action="withdrawals.address_added",
            subject_user_id=user.id,
            origin=origin,
            now=now,
            details=details,
        )
    return row


def list_addresses(*, session: Session, user: User) -> list[WithdrawalAddress]:
    return list(
        session.scalars(
            select(WithdrawalAddress)
            .where(WithdrawalAddress.user_id == user.id, WithdrawalAddress.removed_at.is_(None))
            .order_by(WithdrawalAddress.id)
        )
    )


def get_address(*, session: Session, user: User, address_id: int) -> WithdrawalAddress:
    """One of the user's addresses; another user's, a removed one or none: 404."""
    row = session.get(WithdrawalAddress, address_id)
    if row is None or row.user_id != user.id or row.removed_at is not None:
        raise NotFound("no such withdrawal address", code="address_not_found")
    return row


def remove_address(
    *,
    session: Session,
    user: User,
    address_id: int,
    proof: StepUp,
    settings: Settings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Remove an address after the step-up; a whitelisted one is a security change."""
    proof.require(user)
    now = now or utcnow()
    row = get_address(session=session, user=user, address_id=address_id)
    row.removed_at = now
    if row.whitelisted:
        identity.record_security_change(
            session=session,
            user=user,
            action="withdrawals.address_unwhitelisted",
            change=f"whitelisted withdrawal address {masked(CRYPTO, row.address)} removed",
            settings=settings.auth,
            origin=origin,
            now=now,
        )
    else:
        audit.record(
            session=session,
            action="withdrawals.address_removed",
            subject_user_id=user.id,
            origin=origin,
            now=now,
            details={"address_id": row.id},
        )
    session.flush()


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True, slots=True)
class Destination:
    kind: str
    destination: str
    bank_account_id: int | None = None
    address_id: int | None = None


def destination_of(
    *, session: Session, user: User, amount: Money, destination_id: int, settings: Settings
) -> Destination:
    """Where a withdrawal of ``amount`` goes: a fiat asset to one of the user's linked bank
    accounts, a crypto asset to one of the user's addresses in that asset (whitelisted while
    whitelist mode is on). Another user's, a removed one or none: 404
    ``destination_not_found``."""
    kind = limits.prices_of(settings).kind(amount.asset.code)
    if kind == FIAT:
        try:
            account = banking.get_linked(session=session, user=user, account_id=destination_id)
        except NotFound:
            raise _no_destination() from None
        return Destination(FIAT, account.account_number, bank_account_id=account.id)
    try:
        address = get_address(session=session, user=user, address_id=destination_id)
    except NotFound:
        raise _no_destination() from None
    if address.asset != amount.asset.code:
        raise ValidationFailed(
            f"this address takes {address.asset}", code="asset_mismatch", asset=address.asset
        )
    if preferences(session=session, user=user).whitelist_only and not address.whitelisted:
        raise Forbidden(
            "whitelist mode is on: withdraw to a whitelisted address",
            code="address_not_whitelisted",
        )
    return Destination(CRYPTO, address.address, address_id=address.id)


def _no_destination() -> NotFound:
    return NotFound("no such withdrawal destination", code="destination_not_found")


def operation_of(kind: str) -> Operation:
    return Operation.FIAT_WITHDRAWAL if kind == FIAT else Operation.CRYPTO_WITHDRAWAL


def usdt_value(amount: Money, settings: Settings) -> Fraction:
    """``amount`` in USDT at the reference prices (through the limits currency)."""
    prices = limits.prices_of(settings)
    currency = settings.limits.currency
    value = prices.value(amount.asset.code, amount.amount_minor, currency)
    one_usdt = prices.value(
        QUICK_LIMIT_UNIT, 10 ** prices.scales.get(QUICK_LIMIT_UNIT, 0), currency
    )
    return value / one_usdt if one_usdt else value


def check_request(
    *,
    session: Session,
    user: User,
    amount: Money,
    destination_id: int,
    otp: str | None,
    settings: Settings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Destination:
    """Every refusal of a withdrawal before the money moves (the module's order)."""
    now = now or utcnow()
    verification.require_verified(user)
    if not settings.sandbox_enabled():
        raise ValidationFailed(
            "no payout connector is configured on this installation", code="payouts_unavailable"
        )
    destination = destination_of(
        session=session, user=user, amount=amount, destination_id=destination_id, settings=settings
    )
    frozen = identity.withdrawals_frozen_until(session=session, user_id=user.id, now=now)
    if frozen is not None:
        raise WithdrawalsFrozen(
            "withdrawals are frozen for 24 hours after a change of a security setting",
            frozen_until=frozen.isoformat(),
        )
    wallet = ledger.user_wallet_id_if_any(session=session, user_id=user.id, asset=amount.asset.code)
    limits.check(
        session=session,
        user=user,
        operation=operation_of(destination.kind),
        amount=amount,
        settings=settings,
        account_id=wallet,
        now=now,
    )
    quick = Fraction(Decimal(preferences(session=session, user=user).quick_limit))
    if usdt_value(amount, settings) > quick:
        if not two_factor.is_enabled(user):
            raise TwoFactorRequired(
                "a withdrawal above your quick withdrawal limit needs two-factor "
                "authentication: turn 2FA on, or withdraw at most the limit",
                quick_withdrawal_limit=preferences(session=session, user=user).quick_limit,
                unit=QUICK_LIMIT_UNIT,
            )
        two_factor.verify(
            session=session, user=user, code=otp, settings=settings.auth, now=now, origin=origin
        )
    return destination


def request(
    *,
    session: Session,
    user: User,
    amount: Money,
    destination: Destination,
    settings: Settings,
    now: datetime | None = None,
) -> Withdrawal:
    """The withdrawal's record and its pending transfer (the limits guard re-checked in the
    applying transaction; ``insufficient_funds`` from the ledger). ``check_request`` first."""
    now = now or utcnow()
    withdrawal_id = "wd_" + secrets.token_hex(10)
    asset = amount.asset.code
    wallet = ledger.user_wallet_id(session=session, user_id=user.id, asset=asset)
    clearing = ledger.ensure_account_id(
        session=session,
        owner_type=ledger.OPERATOR,
        owner_id=ledger.OPERATOR,
        kind=CLEARING,
        asset=asset,
    )
    transfer_id = ledger.transfer(
        session=session,
        spec=TransferSpec(
            kind=TransferKind.PENDING,
            id=transfer_id_of(withdrawal_id),
            debit_account_id=wallet,
            credit_account_id=clearing,
            asset=asset,
            amount_minor=amount.amount_minor,
            code=TRANSFER_CODE,
            note=f"{destination.kind} withdrawal",
            guard=limits.guard(
                user=user, operation=operation_of(destination.kind), settings=settings
            ),
        ),
        now=now,
    )
    record = Withdrawal(
        id=withdrawal_id,
        user_id=user.id,
        kind=destination.kind,
        asset=asset,
        amount_minor=amount.amount_minor,
        bank_account_id=destination.bank_account_id,
        address_id=destination.address_id,
        destination=destination.destination,
        status=PENDING,
        payout_state=QUEUED,
        connector=SandboxPayoutConnector().name,
        transfer_id=transfer_id,
        sends=0,
        polls=0,
        confirmations=0,
        created_at=now,
    )
    session.add(record)
    session.flush()
    return record


def of_user(*, session: Session, user: User, withdrawal_id: str) -> Withdrawal:
    """The user's own withdrawal; another user's is ``withdrawal_not_found`` as a missing one."""
    found = session.scalars(
        select(Withdrawal).where(Withdrawal.id == withdrawal_id, Withdrawal.user_id == user.id)
    ).first()
    if found is None:
        raise NotFound("no such withdrawal", code="withdrawal_not_found")
    return found


def recent_of_user(*, session: Session, user: User, limit: int = 50) -> list[Withdrawal]:
    return list(
        session.scalars(
            select(Withdrawal)
            .where(Withdrawal.user_id == user.id)
            .order_by(Withdrawal.created_at.desc(), Withdrawal.id)
            .limit(limit)
        )
    )


def open_payouts(*, session: Session, limit: int = 100) -> list[Withdrawal]:
    """The pending withdrawals, oldest first (the console's pending payouts)."""
    return list(
        session.scalars(
            select(Withdrawal)
            .where(Withdrawal.status == PENDING)
            .order_by(Withdrawal.created_at, Withdrawal.id)
            .limit(limit)
        )
    )


# --------------------------------------------------------------------------- payouts


@dataclass(frozen=True, slots=True)
class Processed:
    paid: int = 0
    failed: int = 0
    waiting: int = 0


def _connector_account(withdrawal: Withdrawal) -> str:
    """What the sandbox decides by: the account number, or the address (one without digits
    pays, as digit 0 does)."""
    destination = withdrawal.destination
    return destination if any(c.isdigit() for c in destination) else destination + "0"


def _locked(session: Session, withdrawal_id: str) -> Withdrawal | None:
    query = select(Withdrawal).where(Withdrawal.id == withdrawal_id)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    row = session.scalars(query).first()
    return row if row is not None and row.status == PENDING else None


def process_payouts(
    factory: sessionmaker[Session], settings: Settings, *, limit: int = 100
) -> Processed:
    """One bounded run of the payout sweep (see the module's docstring); stuck payouts wait for
    an operator."""
    ids = []
    with unit_of_work(factory) as session:
        ids = list(
            session.scalars(
                select(Withdrawal.id)
                .where(Withdrawal.status == PENDING, Withdrawal.payout_state != STUCK)
                .order_by(Withdrawal.created_at, Withdrawal.id)
                .limit(limit)
            )
        )
    paid = failed = waiting = 0
    for withdrawal_id in ids:
        outcome = advance(factory, settings, withdrawal_id)
        if outcome == COMPLETED:
            paid += 1
        elif outcome == FAILED:
            failed += 1
        elif outcome == PENDING:
            waiting += 1
    return Processed(paid=paid, failed=failed, waiting=waiting)


def advance(factory: sessionmaker[Session], settings: Settings, withdrawal_id: str) -> str | None:
    """Move one withdrawal's payout on: its status after, None when another worker holds it.

    A send (the first, or again after "unknown reference") is committed before the connector
    is called; anything else polls about the same payout id."""
    fresh = False
    with unit_of_work(factory) as session:
        row = _locked(session, withdrawal_id)
        if row is None or row.payout_state == STUCK:
            return None
        if row.payout_state in (QUEUED, RESEND):  # the attempt is on record before the send
            row.payout_state = SENT
            row.payout_reference = row.id
            row.sent_at = utcnow()
            row.sends += 1
            fresh = True
    connector = payout_connector(settings)
    with unit_of_work(factory) as session:
        row = _locked(session, withdrawal_id)
        if row is None:
            return None
        money = Money(row.amount_minor, settings.asset_registry().get(row.asset))
        reference = row.payout_reference or row.id
        account = _connector_account(row)
        if fresh:
            _pause_for_tests(row.id, "sending")
            answer = connector.send(payout_id=reference, account_number=account, amount=money)
        else:
            row.polls += 1
            answer = connector.poll(payout_id=reference, account_number=account, amount=money)
        _pause_for_tests(row.id, "answered")
        if answer.status == PayoutStatus.UNKNOWN:
            return _unknown(row, sends_max=settings.funding.payout_sends_max)
        return apply_answer(session=session, withdrawal=row, answer=answer, scale=money.asset.scale)


def _unknown(withdrawal: Withdrawal, *, sends_max: int) -> str:
    """The connector does not know the payout (its send never arrived): send again next sweep,
    or after ``sends_max`` sends leave it pending for an operator. Never a void: nothing says
    the money did not leave."""
    if withdrawal.sends >= sends_max:
        withdrawal.payout_state = STUCK
        log.warning(
            "payout %s unknown to the connector after %d sends: left for an operator",
            withdrawal.id,
            withdrawal.sends,
        )
    else:
        withdrawal.payout_state = RESEND
    return PENDING


def _pause_for_tests(withdrawal_id: str, where: str) -> None:
    marker = os.environ.get(PAUSE_ENV)
    if not marker or os.environ.get(PAUSE_AT_ENV, "answered") != where:
        return
    Path(marker).write_text(withdrawal_id)
    while True:  # the test kills the process here
        time.sleep(0.2)


def apply_answer(
    *,
    session: Session,
    withdrawal: Withdrawal,
    answer: PayoutAnswer,
    scale: int,
    now: datetime | None = None,
) -> str:
    """Post or void the pending transfer of a locked withdrawal by the connector's answer, once;
    a time-out leaves it pending (the next sweep polls)."""
    now = now or utcnow()
    if answer.status == PayoutStatus.TIMED_OUT:
        return PENDING
    user = session.get_one(User, withdrawal.user_id)
    if answer.status == PayoutStatus.PAID:
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                kind=TransferKind.POST_PENDING,
                pending_id=withdrawal.transfer_id,
                id=withdrawal.transfer_id + ":post",
                code=TRANSFER_CODE,
            ),
            now=now,
        )
        withdrawal.status = COMPLETED
        withdrawal.payout_state = PAID
        withdrawal.confirmations += answer.confirmations
        template = "withdrawals.completed"
    else:
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                kind=TransferKind.VOID_PENDING,
                pending_id=withdrawal.transfer_id,
                id=withdrawal.transfer_id + ":void",
                code=TRANSFER_CODE,
            ),
            now=now,
        )
        withdrawal.status = FAILED
        withdrawal.payout_state = FAILED
        withdrawal.failure_reason = "payout_declined"
        template = "withdrawals.failed"
    withdrawal.finished_at = now
    outbox.send_to_user(
        session=session,
        user=user,
        template_id=template,
        context={
            "amount": f"{withdrawal.asset} {format_amount(withdrawal.amount_minor, scale)}",
            "destination": masked_destination(withdrawal),
            "withdrawal_id": withdrawal.id,
            "at": now,
        },
        now=now,
    )
    session.flush()
    return withdrawal.status
