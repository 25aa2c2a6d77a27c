"""Linked bank accounts (R-FUND-2) and the user's phone number (R-P2P-1). Thin: the services
decide (``banking.service``, ``identity.service``); the request's unit of work commits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field

from strongroom.api import RowIdPath, SessionDep, SettingsDep, UserDep, origin_of
from strongroom.api.identity import STEP_UP_REFUSALS, AuthDep, step_up
from strongroom.banking import service
from strongroom.banking.models import BankAccount
from strongroom.identity import service as identity
from strongroom.identity.schemas import StepUpIn

router = APIRouter(prefix="/v1", tags=["banking"])

LINK_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    **STEP_UP_REFUSALS,
    403: {
        "description": "`kyc_required` (`details.required_tier`: no verified legal name yet), "
        "`email_unverified`, `reauthentication_required`: send `password` (and `otp`)"
    },
    409: {
        "description": "`bank_account_exists` (linked already), `too_many_bank_accounts` "
        "(`details.max`)"
    },
    422: {
        "description": "`holder_name_mismatch` (not the verified legal name), "
        "`invalid_holder_name`, `invalid_bank_code`, `invalid_account_number` "
        "(`details.min_digits`, `details.max_digits`), `validation_error`"
    },
}


class BankAccountIn(StepUpIn):
    holder_name: str = Field(min_length=1, max_length=service.HOLDER_NAME_MAX_CHARS)
    bank_code: str = Field(min_length=1, max_length=40)
    account_number: str = Field(min_length=1, max_length=60)


class BankAccountCreated(BaseModel):
    id: int


class BankAccountOut(BaseModel):
    id: int
    holder_name: str
    bank_code: str
    account_number_masked: str = Field(description="the last 4 digits only: `****6789`")
    created_at: datetime


class BankAccountsOut(BaseModel):
    items: list[BankAccountOut]
    max: int


def _out(account: BankAccount) -> BankAccountOut:
    return BankAccountOut(
        id=account.id,
        holder_name=account.holder_name,
        bank_code=account.bank_code,
        account_number_masked=service.masked(account.account_number),
        created_at=account.created_at,
    )


@router.post(
    "/bank-accounts", status_code=201, response_model=BankAccountCreated, responses=LINK_REFUSALS
)
def link_bank_account(
    body: BankAccountIn, auth: AuthDep, request: Request, session: SessionDep, settings: SettingsDep
) -> BankAccountCreated:
    """Link a bank account in the user's own verified legal name (R-FUND-2), after the step-up
    (R-SEC-8: the password again, the 2FA code when 2FA is on). No withdrawal freeze."""
    user = auth[0]
    service.check_new(
        session=session,
        user=user,
        holder_name=body.holder_name,
        bank_code=body.bank_code,
        account_number=body.account_number,
        settings=settings.banking,
    )
    proof = step_up(request, session, settings, auth, body)
    account = service.link(
        session=session,
        user=user,
        holder_name=body.holder_name,
        bank_code=body.bank_code,
        account_number=body.account_number,
        proof=proof,
        settings=settings.banking,
        origin=origin_of(request),
    )
    return BankAccountCreated(id=account.id)


@router.get("/bank-accounts")
def list_bank_accounts(
    user: UserDep, session: SessionDep, settings: SettingsDep
) -> BankAccountsOut:
    """The user's linked bank accounts (numbers masked), oldest first."""
    linked = service.list_linked(session=session, user=user)
    return BankAccountsOut(items=[_out(a) for a in linked], max=settings.banking.accounts_max)


@router.delete(
    "/bank-accounts/{bank_account_id}",
    status_code=204,
    responses={**STEP_UP_REFUSALS, 404: {"description": "`bank_account_not_found`"}},
)
def remove_bank_account(
    bank_account_id: RowIdPath,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[StepUpIn | None, Body()] = None,
) -> Response:
    """Remove a linked account, after the step-up (the body: `{password, otp?}`). A security
    change (R-SEC-5): withdrawals freeze for 24 hours and the user is emailed."""
    service.get_linked(session=session, user=auth[0], account_id=bank_account_id)
    proof = step_up(request, session, settings, auth, body or StepUpIn())
    service.remove(
        session=session,
        user=auth[0],
        account_id=bank_account_id,
        proof=proof,
        settings=settings.auth,
        origin=origin_of(request),
    )
    return Response(status_code=204)


class PhoneIn(BaseModel):
    phone: str = Field(min_length=1, max_length=40, examples=["+852 5123 4567"])


class PhoneOut(BaseModel):
    phone: str = Field(description="E.164")


@router.put(
    "/me/phone",
    tags=["identity"],
    responses={
        409: {"description": "`phone_taken`: another account has this number"},
        422: {"description": "`invalid_phone`, `validation_error`"},
    },
)
def set_phone(body: PhoneIn, user: UserDep, request: Request, session: SessionDep) -> PhoneOut:
    """Set the phone number others can pay (R-P2P-1), in any common format; one without a
    country code is read in the user's region. Stored and answered in E.164. Not verified by
    SMS."""
    phone = identity.set_phone(
        session=session, user=user, phone=body.phone, origin=origin_of(request)
    )
    return PhoneOut(phone=phone)


@router.delete("/me/phone", status_code=204, tags=["identity"])
def remove_phone(user: UserDep, request: Request, session: SessionDep) -> Response:
    """Forget the phone number: nobody can pay it any more."""
    identity.remove_phone(session=session, user=user, origin=origin_of(request))
    return Response(status_code=204)
