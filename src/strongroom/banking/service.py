"""Linked bank accounts (R-FUND-2, issue #12 item 2): up to ``banking.accounts_max`` accounts in
the user's own verified legal name (``names.same_name``), linked after a step-up (R-SEC-8) and
without the 24-hour freeze (the money can only go to the user's own name); removing one is a
security change (R-SEC-5: freeze and email, ``identity.record_security_change``). Services never
commit: the request's unit of work does."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from strongroom.banking import names
from strongroom.banking.models import BankAccount
from strongroom.db import utcnow
from strongroom.errors import Conflict, Forbidden, NotFound, ValidationFailed
from strongroom.identity import audit, verification
from strongroom.identity import service as identity
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.identity.step_up import StepUp
from strongroom.settings import AuthSettings, BankingSettings

HOLDER_NAME_MAX_CHARS: Final = 200
SHOWN_DIGITS: Final = 4
REQUIRED_TIER: Final = "primary"


def verified_legal_name(session: Session, user: User) -> str | None:
    """The legal name of the user's approved identity document, or None before one is approved.
    The one place banking reads it: KYC approval (issue #11) sets ``users.legal_name``."""
    del session  # read from the user's row today; KYC may read its submission here instead
    return user.legal_name


def masked(account_number: str) -> str:
    """``****6789``: the last digits only, the same mask whatever the length."""
    return "****" + account_number[-SHOWN_DIGITS:]


def _digits(value: str, *, field: str, low: int, high: int, code: str) -> str:
    cleaned = value.replace(" ", "").replace("-", "")
    if not (cleaned.isascii() and cleaned.isdigit() and low <= len(cleaned) <= high):
        raise ValidationFailed(
            f"{field} must be {low}-{high} digits (spaces and dashes are ignored)",
            code=code,
            min_digits=low,
            max_digits=high,
        )
    return cleaned


def check_details(
    *, holder_name: str, bank_code: str, account_number: str, settings: BankingSettings
) -> tuple[str, str]:
    """The formats of a bank account (also a merchant's settlement account): the bank code
    and account number as digits (``invalid_bank_code``, ``invalid_account_number``), a holder
    name of 1-200 characters (``invalid_holder_name``)."""
    code = _digits(
        bank_code,
        field="bank_code",
        low=settings.bank_code_min_digits,
        high=settings.bank_code_max_digits,
        code="invalid_bank_code",
    )
    number = _digits(
        account_number,
        field="account_number",
        low=settings.account_number_min_digits,
        high=settings.account_number_max_digits,
        code="invalid_account_number",
    )
    if not holder_name.strip() or len(holder_name) > HOLDER_NAME_MAX_CHARS:
        raise ValidationFailed(
            f"holder_name must be 1-{HOLDER_NAME_MAX_CHARS} characters", code="invalid_holder_name"
        )
    return code, number


def check_new(
    *,
    session: Session,
    user: User,
    holder_name: str,
    bank_code: str,
    account_number: str,
    settings: BankingSettings,
) -> tuple[str, str]:
    """Everything a link is refused for before the step-up, writing nothing: the formats, a
    verified legal name (403 ``kyc_required``), the holder name matching it (422
    ``holder_name_mismatch``), the limit (409 ``too_many_bank_accounts``) and a duplicate (409
    ``bank_account_exists``). The bank code and account number as digits."""
    verification.require_verified(user)  # R-SEC-11
    code, number = check_details(
        holder_name=holder_name,
        bank_code=bank_code,
        account_number=account_number,
        settings=settings,
    )
    legal_name = verified_legal_name(session, user)
    if legal_name is None:
        raise Forbidden(
            "link a bank account after your identity is verified (KYC)",
            code="kyc_required",
            required_tier=REQUIRED_TIER,
        )
    if not names.same_name(holder_name, legal_name):
        raise ValidationFailed(
            "the account holder's name must be your own verified legal name",
            code="holder_name_mismatch",
        )
    linked = list_linked(session=session, user=user)
    if any(a.bank_code == code and a.account_number == number for a in linked):
        raise Conflict("this bank account is already linked", code="bank_account_exists")
    if len(linked) >= settings.accounts_max:
        raise Conflict(
            f"at most {settings.accounts_max} bank accounts can be linked: remove one first",
            code="too_many_bank_accounts",
            max=settings.accounts_max,
        )
    return code, number


def link(
    *,
    session: Session,
    user: User,
    holder_name: str,
    bank_code: str,
    account_number: str,
    proof: StepUp,
    settings: BankingSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> BankAccount:
    """Link an account after the step-up (``proof``): the checks of ``check_new`` again under
    the user's row lock (two links at once cannot pass the limit), then the row and an audit
    event. No freeze (the account is in the user's own name)."""
    proof.require(user)
    now = now or utcnow()
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    code, number = check_new(
        session=session,
        user=user,
        holder_name=holder_name,
        bank_code=bank_code,
        account_number=account_number,
        settings=settings,
    )
    account = BankAccount(
        user_id=user.id,
        holder_name=holder_name.strip(),
        bank_code=code,
        account_number=number,
        created_at=now,
    )
    session.add(account)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as error:
        raise Conflict("this bank account is already linked", code="bank_account_exists") from error
    audit.record(
        session=session,
        action="bank_account.linked",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={
            "bank_account_id": account.id,
            "bank_code": code,
            "account_number": masked(number),
        },
    )
    return account


def list_linked(*, session: Session, user: User) -> list[BankAccount]:
    """The user's linked accounts, oldest first."""
    return list(
        session.scalars(
            select(BankAccount)
            .where(BankAccount.user_id == user.id, BankAccount.removed_at.is_(None))
            .order_by(BankAccount.id)
        )
    )


def get_linked(*, session: Session, user: User, account_id: int) -> BankAccount:
    """One of the user's linked accounts; another user's, a removed one or none: 404."""
    account = session.get(BankAccount, account_id)
    if account is None or account.user_id != user.id or account.removed_at is not None:
        raise NotFound("no such bank account", code="bank_account_not_found")
    return account


def remove(
    *,
    session: Session,
    user: User,
    account_id: int,
    proof: StepUp,
    settings: AuthSettings,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> None:
    """Remove a linked account after the step-up: a change of the withdrawal destinations, so a
    security change (R-SEC-5): withdrawals freeze for 24 hours and the user is emailed."""
    proof.require(user)
    now = now or utcnow()
    account = get_linked(session=session, user=user, account_id=account_id)
    account.removed_at = now
    identity.record_security_change(
        session=session,
        user=user,
        action="bank_account.removed",
        change=f"bank account {account.bank_code} {masked(account.account_number)} removed",
        settings=settings,
        origin=origin,
        now=now,
    )
