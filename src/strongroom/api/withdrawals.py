"""Withdrawals (R-FUND-2, R-FUND-3): ``POST /v1/withdrawals``, ``GET /v1/withdrawals[/{id}]``,
the crypto address book (``/v1/withdrawal-addresses``) and the withdrawal settings (whitelist
mode, the quick withdrawal limit). Thin: ``withdrawals.service`` decides; the request's unit of
work commits. One Idempotency-Key is one withdrawal (claimed in the same transaction as the
record and its pending transfer; a replay answers with the withdrawal as it stands)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy.orm import Session

from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    RowIdPath,
    SessionDep,
    SettingsDep,
    UserDep,
    origin_of,
)
from strongroom.api.funding import idempotency_in_progress
from strongroom.api.identity import STEP_UP_REFUSALS, AuthDep, step_up
from strongroom.db import ROW_ID_LIMIT
from strongroom.identity.audit import Origin
from strongroom.identity.models import User
from strongroom.identity.schemas import StepUpIn
from strongroom.money import (
    AMOUNT_JSON_SCHEMA,
    ASSET_JSON_SCHEMA,
    AssetRegistry,
    Money,
    format_amount,
    required_in_schema,
)
from strongroom.movements import idempotency
from strongroom.settings import Settings
from strongroom.withdrawals import service
from strongroom.withdrawals.models import Withdrawal, WithdrawalAddress

router = APIRouter(prefix="/v1", tags=["withdrawals"])
OPERATION: Final = "POST /v1/withdrawals"


class WithdrawalIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra=required_in_schema("asset", "amount", "destination_id")
    )

    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None
    destination_id: int = Field(
        ge=1,
        lt=ROW_ID_LIMIT,
        description="a linked bank account's id (a fiat asset) or an address book entry's id "
        "(a crypto asset)",
    )
    otp: str | None = Field(
        default=None,
        max_length=40,
        description="the 2FA code: required above the quick withdrawal limit when 2FA is on",
    )


class WithdrawalCreated(BaseModel):
    id: str
    status: str


class WithdrawalOut(BaseModel):
    """``id, asset, amount, status`` (SPEC §13); the rest beside."""

    id: str
    asset: str
    amount: str
    status: str = Field(description="`pending`, `completed` or `failed`")
    kind: str = Field(description="`fiat` (to a bank account) or `crypto` (to an address)")
    destination: str = Field(description="masked: `****6789`, `bc1qxy...0wlh`")
    created_at: datetime
    finished_at: datetime | None = None
    failure_reason: str | None = None


class WithdrawalsOut(BaseModel):
    items: list[WithdrawalOut]


def withdrawal_view(record: Withdrawal, registry: AssetRegistry) -> WithdrawalOut:
    return WithdrawalOut(
        id=record.id,
        asset=record.asset,
        amount=format_amount(record.amount_minor, registry.get(record.asset).scale),
        status=record.status,
        kind=record.kind,
        destination=service.masked_destination(record),
        created_at=record.created_at,
        finished_at=record.finished_at,
        failure_reason=record.failure_reason,
    )


REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    201: {"model": WithdrawalCreated},
    401: {
        "description": "no valid token (`unauthorized`, `invalid_token`); `otp_required`, "
        "`invalid_otp` (above the quick withdrawal limit with 2FA on)"
    },
    403: {
        "description": "`kyc_required` (`details.required_tier`, R-KYC-6), `withdrawals_frozen` "
        "(`details.frozen_until`: 24 h after a security change, R-SEC-5), `two_factor_required` "
        "(above the quick withdrawal limit without 2FA: `details.quick_withdrawal_limit`, "
        "`details.unit`), `address_not_whitelisted`, `email_unverified`"
    },
    404: {"description": "`destination_not_found` (also another user's)"},
    409: {"description": "`idempotency_key_reused`, `idempotency_key_in_progress`"},
    422: {
        "description": "`limit_exceeded` (`details {limit, limit_amount, left, frees_at}`), "
        "`funds_locked` (`details {asset, locked, unlocks_at}`, R-TN-2), `insufficient_funds`, "
        "`asset_mismatch`, `invalid_amount`, `unknown_asset`, `payouts_unavailable`, "
        "`validation_error`, `idempotency_key_required`"
    },
    429: {"description": "`two_factor_blocked`"},
}


@router.post("/withdrawals", status_code=201, response_model=WithdrawalCreated, responses=REFUSALS)
def create_withdrawal(
    body: WithdrawalIn,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Withdraw to a linked bank account (fiat) or an address (crypto): a pending transfer at
    once (available drops), paid out by the payout connector in the background (``pending`` ->
    ``completed``, or ``failed`` and the money returns; the user is emailed either way)."""
    amount = registry.money(body.amount, body.asset)
    record = submit_withdrawal(
        session=session,
        settings=settings,
        user=user,
        key=idempotency_key,
        body=body.model_dump(mode="json", exclude={"otp"}),
        amount=amount,
        destination_id=body.destination_id,
        otp=body.otp,
        origin=origin_of(request),
    )
    return JSONResponse({"id": record.id, "status": record.status}, status_code=201)


def submit_withdrawal(
    *,
    session: Session,
    settings: Settings,
    user: User,
    key: str | None,
    body: dict[str, Any],
    amount: Money,
    destination_id: int,
    otp: str | None,
    origin: Origin,
    operation: str = OPERATION,
) -> Withdrawal:
    """A withdrawal once per Idempotency-Key in the scope of the user and ``operation`` (the
    Lite form's is its own): the key claimed in the same transaction as the record and its
    pending transfer; a replay answers with the withdrawal as it stands now."""
    claim = idempotency.claim_for(
        actor_id=user.id,
        operation=operation,
        key=key,
        request=body,
        key_max_chars=settings.idempotency.key_max_chars,
    )
    replay = idempotency.stored_outcome(session=session, claim=claim)
    if replay is not None:
        return service.of_user(session=session, user=user, withdrawal_id=replay.id)
    destination = service.check_request(
        session=session,
        user=user,
        amount=amount,
        destination_id=destination_id,
        otp=otp,
        settings=settings,
        origin=origin,
    )
    if not idempotency.claim_all(session=session, claims=[claim]):
        raise idempotency_in_progress()
    record = service.request(
        session=session, user=user, amount=amount, destination=destination, settings=settings
    )
    outcome = idempotency.Outcome(id=record.id, status=record.status)
    idempotency.settle(session=session, done=[(claim, outcome)], refused=[])
    return record


@router.get("/withdrawals")
def list_withdrawals(user: UserDep, session: SessionDep, registry: AssetsDep) -> WithdrawalsOut:
    """The user's 50 newest withdrawals, newest first."""
    rows = service.recent_of_user(session=session, user=user)
    return WithdrawalsOut(items=[withdrawal_view(r, registry) for r in rows])


WithdrawalIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")]


@router.get(
    "/withdrawals/{withdrawal_id}",
    response_model=WithdrawalOut,
    responses={
        401: {"description": "no valid token (`unauthorized`, `invalid_token`)"},
        404: {"description": "`withdrawal_not_found` (also another user's)"},
    },
)
def get_withdrawal(
    withdrawal_id: WithdrawalIdPath, user: UserDep, session: SessionDep, registry: AssetsDep
) -> WithdrawalOut:
    """One of the user's withdrawals as it stands."""
    record = service.of_user(session=session, user=user, withdrawal_id=withdrawal_id)
    return withdrawal_view(record, registry)


# --------------------------------------------------------------------------- address book


class AddressIn(StepUpIn):
    asset: str = Field(min_length=1, max_length=10)
    address: str = Field(min_length=1, max_length=200)
    label: str | None = Field(default=None, max_length=200)
    whitelisted: bool = Field(
        default=False,
        description="add it to the whitelist: a security change (withdrawals freeze for 24 h)",
    )


class AddressCreated(BaseModel):
    id: int


class AddressOut(BaseModel):
    id: int
    asset: str
    address: str
    label: str | None
    whitelisted: bool
    created_at: datetime


class AddressesOut(BaseModel):
    items: list[AddressOut]
    whitelist_only: bool


def _address(row: WithdrawalAddress) -> AddressOut:
    return AddressOut(
        id=row.id,
        asset=row.asset,
        address=row.address,
        label=row.label,
        whitelisted=row.whitelisted,
        created_at=row.created_at,
    )


@router.post(
    "/withdrawal-addresses",
    status_code=201,
    response_model=AddressCreated,
    responses={
        **STEP_UP_REFUSALS,
        409: {"description": "`address_exists`"},
        422: {
            "description": "`asset_not_crypto`, `invalid_address`, `invalid_label`, "
            "`validation_error`"
        },
    },
)
def add_address(
    body: AddressIn, auth: AuthDep, request: Request, session: SessionDep, settings: SettingsDep
) -> AddressCreated:
    """Add a crypto address to the address book after the step-up (R-SEC-8: the password, and
    the 2FA code when 2FA is on). ``whitelisted``: a security change (R-SEC-5)."""
    service.check_address(
        asset=body.asset, address=body.address, label=body.label, settings=settings
    )
    proof = step_up(request, session, settings, auth, body)
    row = service.add_address(
        session=session,
        user=auth[0],
        asset=body.asset,
        address=body.address,
        label=body.label,
        whitelisted=body.whitelisted,
        proof=proof,
        settings=settings,
        origin=origin_of(request),
    )
    return AddressCreated(id=row.id)


@router.get("/withdrawal-addresses")
def list_addresses(user: UserDep, session: SessionDep) -> AddressesOut:
    """The user's addresses, oldest first, and whether whitelist mode is on."""
    rows = service.list_addresses(session=session, user=user)
    prefs = service.preferences(session=session, user=user)
    return AddressesOut(items=[_address(r) for r in rows], whitelist_only=prefs.whitelist_only)


@router.delete(
    "/withdrawal-addresses/{address_id}",
    status_code=204,
    responses={**STEP_UP_REFUSALS, 404: {"description": "`address_not_found`"}},
)
def remove_address(
    address_id: RowIdPath,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[StepUpIn | None, Body()] = None,
) -> Response:
    """Remove an address after the step-up (body `{password, otp?}`); a whitelisted one is a
    security change (R-SEC-5)."""
    service.get_address(session=session, user=auth[0], address_id=address_id)
    proof = step_up(request, session, settings, auth, body or StepUpIn())
    service.remove_address(
        session=session,
        user=auth[0],
        address_id=address_id,
        proof=proof,
        settings=settings,
        origin=origin_of(request),
    )
    return Response(status_code=204)


class WithdrawalSettingsIn(StepUpIn):
    whitelist_only: bool | None = None
    quick_withdrawal_limit: str | None = Field(
        default=None, max_length=40, description="USDT-equivalent, a decimal string"
    )


class WithdrawalSettingsOut(BaseModel):
    whitelist_only: bool
    quick_withdrawal_limit: str = Field(description="USDT-equivalent")
    unit: str = service.QUICK_LIMIT_UNIT


@router.get("/withdrawal-settings")
def get_withdrawal_settings(user: UserDep, session: SessionDep) -> WithdrawalSettingsOut:
    prefs = service.preferences(session=session, user=user)
    return WithdrawalSettingsOut(
        whitelist_only=prefs.whitelist_only, quick_withdrawal_limit=prefs.quick_limit
    )


@router.put(
    "/withdrawal-settings",
    responses={**STEP_UP_REFUSALS, 422: {"description": "`invalid_quick_limit`"}},
)
def set_withdrawal_settings(
    body: WithdrawalSettingsIn,
    auth: AuthDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> WithdrawalSettingsOut:
    """Whitelist mode and the quick withdrawal limit, after the step-up: a change is a security
    change (R-SEC-5: withdrawals freeze for 24 hours, the user is emailed)."""
    proof = step_up(request, session, settings, auth, body)
    prefs = service.set_preferences(
        session=session,
        user=auth[0],
        whitelist_only=body.whitelist_only,
        quick_limit=body.quick_withdrawal_limit,
        proof=proof,
        settings=settings,
        origin=origin_of(request),
    )
    return WithdrawalSettingsOut(
        whitelist_only=prefs.whitelist_only, quick_withdrawal_limit=prefs.quick_limit
    )
