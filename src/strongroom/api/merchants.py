"""Merchants over HTTP (R-MERCH-1..4, R-CODE-2, R-XB-1): onboarding and terminal keys for
operators (``/v1/admin/merchants``: reading ``merchants``; onboarding, keys and members
``merchants.manage``, admins), the terminal API (``/v1/merchant/...``: ``X-Api-Key`` of a
merchant key, or a signed-in member of the merchant; each role's rights in
``merchants.roles``), and a user paying a merchant's QR code (``/v1/pay/emv``). Thin:
``strongroom.merchants`` decides; money-moving calls run once per Idempotency-Key, scoped to
the merchant (or the paying user): a terminal's charge through the group-commit batcher
(``create_charge``), refunds and QR payments in the request's unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import Table
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import (
    ApiKeyHeader,
    AssetsDep,
    IdempotencyKeyHeader,
    ServiceKeyGuard,
    SessionDep,
    SettingsDep,
    bearer_token,
    operator_with,
    origin_of,
)
from strongroom.api.paycodes import WalletUserDep
from strongroom.db import utcnow
from strongroom.errors import DomainError, NotFound
from strongroom.identity import api_keys
from strongroom.identity import service as identity_service
from strongroom.identity.models import User
from strongroom.merchants import charges, webhooks
from strongroom.merchants import service as merchants
from strongroom.merchants.models import Merchant
from strongroom.money import AMOUNT_JSON_SCHEMA, ASSET_JSON_SCHEMA
from strongroom.movements import idempotency
from strongroom.movements import service as movements
from strongroom.movements.batcher import Once, Prepared
from strongroom.movements.idempotency import Outcome
from strongroom.paycodes import service as paycodes
from strongroom.paycodes.models import CodeUse
from strongroom.settings import Settings

admin_router = APIRouter(prefix="/v1/admin/merchants", tags=["merchants (operators)"])
router = APIRouter(prefix="/v1/merchant", tags=["merchant terminals"])
pay_router = APIRouter(prefix="/v1/pay", tags=["merchant payments"])

MerchantIdPath = Annotated[str, Path(pattern=r"^m_[0-9a-f]{16}$", max_length=18)]
Role = Literal["owner", "manager", "cashier", "finance"]
Amount = Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)]


# --------------------------------------------------------------------------- operators


class BankAccountIn(BaseModel):
    holder_name: str = Field(min_length=1, max_length=200)
    bank_code: str = Field(min_length=1, max_length=20)
    account_number: str = Field(min_length=1, max_length=40)


class MerchantIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    mcc: str = Field(pattern=r"^[0-9]{4}$")
    region: Literal["HK", "CN"]
    settlement_bank_account: BankAccountIn
    city: str | None = Field(default=None, min_length=1, max_length=15)
    discount_rate_bps: int | None = Field(default=None, ge=0, le=10_000)


class MerchantCreatedOut(BaseModel):
    merchant_id: str


class MerchantOut(BaseModel):
    merchant_id: str
    name: str
    mcc: str
    region: str
    city: str
    currency: str
    status: str
    discount_rate_bps: int
    settlement_bank_code: str
    settlement_account_number: str
    webhook_url: str | None
    created_at: datetime


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=64)
    role: Role = "manager"


class KeyCreatedOut(BaseModel):
    api_key: str
    id: str
    name: str
    role: str


class MemberIn(BaseModel):
    role: Role


class MemberOut(BaseModel):
    merchant_id: str
    user_id: str
    role: str


ADMIN_404: dict[int | str, dict[str, Any]] = {404: {"description": "`merchant_not_found`"}}


@admin_router.post(
    "",
    status_code=201,
    response_model=MerchantCreatedOut,
    responses={
        422: {
            "description": "`invalid_name`, `invalid_mcc`, `invalid_region`, `invalid_city`, "
            "`invalid_bank_code`, `invalid_account_number`, `invalid_holder_name`"
        }
    },
)
def create_merchant(
    body: MerchantIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    operator: User = operator_with("merchants.manage"),
) -> JSONResponse:
    """Onboard a merchant (audited): its region decides its currency (HK: HKD, CN: CNY); the
    discount rate defaults to ``merchants.discount_rate_bps_default`` (80 bps)."""
    account = body.settlement_bank_account
    merchant = merchants.onboard(
        session=session,
        operator=operator,
        name=body.name,
        mcc=body.mcc,
        region=body.region,
        holder_name=account.holder_name,
        bank_code=account.bank_code,
        account_number=account.account_number,
        settings=settings,
        city=body.city,
        discount_rate_bps=body.discount_rate_bps,
        origin=origin_of(request),
    )
    return JSONResponse({"merchant_id": merchant.id}, status_code=201)


def merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        merchant_id=merchant.id,
        name=merchant.name,
        mcc=merchant.mcc,
        region=merchant.region,
        city=merchant.city,
        currency=merchants.currency_of(merchant),
        status=merchant.status,
        discount_rate_bps=merchant.discount_rate_bps,
        settlement_bank_code=merchant.settlement_bank_code,
        settlement_account_number="****" + merchant.settlement_account_number[-4:],
        webhook_url=merchant.webhook_url,
        created_at=merchant.created_at,
    )


class MerchantRowOut(MerchantOut):
    """A merchant in the operators' list: ``MerchantOut`` and why it is suspended, if it is."""

    suspended_at: datetime | None
    suspended_reason: str | None
    suspended_by: str | None


class MerchantsOut(BaseModel):
    items: list[MerchantRowOut]
    next_cursor: str | None


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=merchants.REASON_MAX_CHARS)


OPERATOR_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token (`unauthorized`, `invalid_token`, `token_expired`)"},
    403: {
        "description": "a role without the capability (`forbidden`, `details.roles`), an "
        "operator without 2FA (`two_factor_required`), not an operator (`forbidden`)"
    },
}


def merchant_row_out(merchant: Merchant) -> MerchantRowOut:
    return MerchantRowOut(
        **merchant_out(merchant).model_dump(),
        suspended_at=merchant.suspended_at,
        suspended_reason=merchant.suspended_reason,
        suspended_by=merchant.suspended_by,
    )


@admin_router.get(
    "",
    response_model=MerchantsOut,
    responses={
        **OPERATOR_REFUSED,
        422: {
            "description": "`validation_error` (a bad status, region or limit), `invalid_cursor`"
        },
    },
)
def list_merchants(
    session: SessionDep,
    settings: SettingsDep,
    status: Literal["active", "suspended"] | None = None,
    region: Literal["HK", "CN"] | None = None,
    cursor: Annotated[str | None, Query(max_length=merchants.CURSOR_MAX_CHARS)] = None,
    limit: Annotated[int | None, Query(ge=1, le=merchants.PAGE_MAX)] = None,
    operator: User = operator_with("merchants"),
) -> MerchantsOut:
    """Merchants newest first, of one status and region or all (keyset pages:
    ``next_cursor``); suspended ones say when, why and by whom."""
    size = min(limit or settings.ledger.page_size_default, merchants.PAGE_MAX)
    page = merchants.search(
        session=session, limit=size, status=status, region=region, cursor=cursor
    )
    return MerchantsOut(
        items=[merchant_row_out(m) for m in page.items], next_cursor=page.next_cursor
    )


@admin_router.post(
    "/{merchant_id}/suspend",
    response_model=MerchantRowOut,
    responses={
        **OPERATOR_REFUSED,
        **ADMIN_404,
        400: {"description": "`malformed_json`"},
        409: {"description": "`merchant_already_suspended`"},
        422: {"description": "`invalid_reason`, `validation_error`"},
    },
)
def suspend_merchant(
    merchant_id: MerchantIdPath,
    body: ReasonIn,
    request: Request,
    session: SessionDep,
    operator: User = operator_with("merchants.manage"),
) -> MerchantRowOut:
    """Suspend a merchant (audited, with a reason): its terminal keys, its people and its QR
    codes are refused (403 `merchant_suspended`) and its open payout-batch rows fail unpaid;
    its settlements still pay what it earned. Suspending it again: 409."""
    merchant = merchants.suspend(
        session=session,
        operator=operator,
        merchant_id=merchant_id,
        reason=body.reason,
        origin=origin_of(request),
    )
    return merchant_row_out(merchant)


@admin_router.post(
    "/{merchant_id}/reinstate",
    response_model=MerchantRowOut,
    responses={
        **OPERATOR_REFUSED,
        **ADMIN_404,
        400: {"description": "`malformed_json`"},
        409: {"description": "`merchant_not_suspended`"},
        422: {"description": "`invalid_reason`, `validation_error`"},
    },
)
def reinstate_merchant(
    merchant_id: MerchantIdPath,
    body: ReasonIn,
    request: Request,
    session: SessionDep,
    operator: User = operator_with("merchants.manage"),
) -> MerchantRowOut:
    """Let a suspended merchant work again (audited, with a reason). An active one: 409."""
    merchant = merchants.reinstate(
        session=session,
        operator=operator,
        merchant_id=merchant_id,
        reason=body.reason,
        origin=origin_of(request),
    )
    return merchant_row_out(merchant)


@admin_router.get("/{merchant_id}", response_model=MerchantOut, responses=ADMIN_404)
def read_merchant(
    merchant_id: MerchantIdPath,
    session: SessionDep,
    operator: User = operator_with("merchants"),
) -> MerchantOut:
    """One merchant (the settlement account number masked)."""
    return merchant_out(merchants.get(session=session, merchant_id=merchant_id))


@admin_router.post(
    "/{merchant_id}/api-keys",
    status_code=201,
    response_model=KeyCreatedOut,
    responses={**ADMIN_404, 409: {"description": "`api_key_name_taken`"}},
)
def create_key(
    merchant_id: MerchantIdPath,
    request: Request,
    session: SessionDep,
    operator: User = operator_with("merchants.manage"),
    body: KeyIn | None = None,
) -> JSONResponse:
    """A terminal key for the merchant: ``api_key`` is in this answer only (stored hashed).
    ``role`` (default ``manager``) decides what the key may do (``merchants.roles``)."""
    body = body or KeyIn()
    merchant = merchants.get(session=session, merchant_id=merchant_id)
    issued = merchants.issue_key(
        session=session,
        operator=operator,
        merchant=merchant,
        role=body.role,
        name=body.name,
        origin=origin_of(request),
    )
    out = KeyCreatedOut(api_key=issued.key, id=issued.id, name=issued.name, role=body.role)
    return JSONResponse(out.model_dump(), status_code=201)


@admin_router.delete(
    "/{merchant_id}/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "`merchant_not_found`, `api_key_not_found`"}},
)
def revoke_key(
    merchant_id: MerchantIdPath,
    key_id: Annotated[str, Path(pattern=r"^key_[0-9a-f]{16}$", max_length=20)],
    request: Request,
    session: SessionDep,
    operator: User = operator_with("merchants.manage"),
) -> Response:
    """Revoke a terminal key at once (again: no change)."""
    merchant = merchants.get(session=session, merchant_id=merchant_id)
    merchants.revoke_key(
        session=session,
        operator=operator,
        merchant=merchant,
        key_id=key_id,
        origin=origin_of(request),
    )
    return Response(status_code=204)


@admin_router.put(
    "/{merchant_id}/members/{user_id}",
    response_model=MemberOut,
    responses={
        404: {"description": "`merchant_not_found`, `user_not_found`"},
        409: {"description": "`operator_not_allowed`"},
    },
)
def set_member(
    merchant_id: MerchantIdPath,
    user_id: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")],
    body: MemberIn,
    request: Request,
    session: SessionDep,
    operator: User = operator_with("merchants.manage"),
) -> MemberOut:
    """Give a user a role in the merchant (its portal signs them in as themselves)."""
    merchant = merchants.get(session=session, merchant_id=merchant_id)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    row = merchants.add_member(
        session=session,
        operator=operator,
        merchant=merchant,
        user=user,
        role=body.role,
        origin=origin_of(request),
    )
    return MemberOut(merchant_id=row.merchant_id, user_id=row.user_id, role=row.role)


# --------------------------------------------------------------------------- terminals


class MerchantGuard:
    """A merchant's terminal key (``X-Api-Key`` with the ``merchant`` scope; every use audited
    as every service key's) or, without a key, a signed-in person who works for the merchant
    (``Authorization: Bearer``; ``X-Merchant-Id`` when they work for several): the merchant
    portal's sign-in is the user's own. Either way the role decides (``merchants.roles``)."""

    def __init__(self) -> None:
        self.keys = ServiceKeyGuard(api_keys.MERCHANT)

    def __call__(
        self,
        request: Request,
        session: SessionDep,
        token: Annotated[str | None, Depends(bearer_token)],
        key: ApiKeyHeader = None,
        merchant_id: Annotated[str | None, Header(alias="X-Merchant-Id", max_length=18)] = None,
    ) -> merchants.Principal:
        if not key and token is not None:
            user = identity_service.authenticate(session=session, token=token)
            return merchants.principal_of_member(
                session=session, user=user, merchant_id=merchant_id
            )
        caller = self.keys(request, session, key, None)
        return merchants.principal_of_key(session=session, caller=caller)


PrincipalDep = Annotated[merchants.Principal, Depends(MerchantGuard())]

ROLE_403: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "no valid terminal key or token: `api_key_required`, `invalid_api_key` "
        "(unknown or revoked), `unauthorized`, `invalid_token`, `token_expired`"
    },
    403: {
        "description": "`merchant_role_forbidden` (the key's or member's role may not), "
        "`merchant_suspended`, `not_a_merchant_member`, `insufficient_scope`"
    },
    422: {"description": "`merchant_id_required` (a member of several merchants)"},
}


class ChargeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_code: str | None = Field(default=None, min_length=1, max_length=64)
    token: str | None = Field(default=None, min_length=1, max_length=32)
    emv_payload: str | None = Field(default=None, min_length=1, max_length=512)
    amount: Amount
    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)]


class MovedOut(BaseModel):
    id: str
    status: str


class ChargeOut(BaseModel):
    id: str
    merchant_id: str
    status: str
    method: str
    token_last4: str | None
    asset: str
    amount: str
    fee: str
    net: str
    refunded: str
    payer_asset: str
    payer_amount: str
    fx_rate: str | None
    created_at: str


class ChargesOut(BaseModel):
    items: list[ChargeOut]
    next_cursor: str | None


EMV_CODES = ", ".join(
    f"`emv_{name}`"
    for name in [
        "invalid",
        "amount_invalid",
        "crc_mismatch",
        "crc_misplaced",
        "crc_missing",
        "currency_invalid",
        "field_invalid",
        "format_invalid",
        "id_invalid",
        "length_invalid",
        "length_overrun",
        "too_long",
        "truncated",
        "no_code",
        "unknown_code",
        "unknown_merchant",
    ]
)
MOVE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: ROLE_403[401],
    403: {
        "description": ROLE_403[403]["description"]
        + "; the payer's: `email_unverified`, `kyc_required`, `wallet_users_only`"
    },
    404: {"description": "`charge_not_found` (unknown, or another merchant's)"},
    409: {
        "description": "`payment_code_used`, `qr_used`, `refund_window_closed`, "
        "`idempotency_key_reused`, `idempotency_key_in_progress`"
    },
    422: {
        "description": "`one_payment_method`, `payment_code_invalid`, `payment_code_expired`, "
        "`payment_code_revoked`, `token_invalid`, `token_suspended`, "
        "`token_merchant_mismatch`, `asset_not_accepted`, `amount_required`, `amount_mismatch`, "
        + EMV_CODES
        + ", `asset_not_accepted`, `insufficient_funds`, "
        "`funds_locked`, `limit_exceeded`, `rate_unavailable`, `refund_exceeds_charge`, "
        "`invalid_amount`, `unknown_asset`, `idempotency_key_required`, `validation_error`, "
        "`merchant_id_required`"
    },
}


def _once(
    request: Request,
    session: Session,
    settings: Any,
    actor: str,
    key: str | None,
    body: BaseModel,
    work: Any,
) -> JSONResponse:
    outcome = movements.run_once(
        session=session,
        settings=settings,
        actor_id=actor,
        operation=f"{request.method} {request.url.path}",
        key=key,
        request=body.model_dump(mode="json"),
        work=work,
    )
    return JSONResponse(outcome.as_dict(), status_code=201)


@router.post("/charges", status_code=201, response_model=MovedOut, responses=MOVE_ERRORS)
def create_charge(
    body: ChargeIn,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Charge a customer: exactly one of ``payment_code`` (accepted once), ``token`` (a
    virtual card number) or ``emv_payload``; the discount-rate fee is a linked leg; a payer of
    another region pays in their currency at the live rate (R-XB-1).

    Checked in the request's thread, moved by the group-commit batcher (``movements.submit``):
    the legs as one linked group, the code's use as the job's ``Once`` row and the charge's
    rows, in the batch's one transaction, so the hot merchant's lock and the commit are paid
    once per batch (issue #13)."""
    principal.require("charge")
    merchant = principal.merchant

    def prepare(current: Session) -> Prepared:
        now = utcnow()
        amount = registry.money(body.amount, body.asset)
        payer = charges.payer_from(
            session=current,
            merchant=merchant,
            settings=settings,
            payment_code=body.payment_code,
            token=body.token,
            emv_payload=body.emv_payload,
            consume=False,
            now=now,
        )
        prepared = charges.prepare_charge(
            session=current,
            merchant=merchant,
            payer=payer,
            amount=amount,
            settings=settings,
            assets=registry,
            actor=principal.actor,
            now=now,
        )
        return Prepared(
            spec=prepared.legs[0],
            linked=prepared.legs[1:],
            outcome=Outcome(id=prepared.charge_id, status=prepared.status),
            on_commit=prepared.on_commit,
            once=None
            if payer.code is None
            else Once(
                table=CODE_USES,
                values=paycodes.use_row(payer.code, now),
                refusal=paycodes.used_again(),
            ),
        )

    operation = f"{request.method} {request.url.path}"
    content = body.model_dump(mode="json")
    try:
        outcome = movements.submit(
            session=session,
            batcher=request.app.state.batcher,
            settings=settings,
            actor_id=merchant.id,
            operation=operation,
            key=idempotency_key,
            request=content,
            prepare=prepare,
        )
    except DomainError as error:
        outcome = _committed_meanwhile(
            session, settings, merchant.id, operation, idempotency_key, content, error
        )
    return JSONResponse(outcome.as_dict(), status_code=201)


def _committed_meanwhile(
    session: Session,
    settings: Settings,
    actor_id: str,
    operation: str,
    key: str | None,
    content: Any,
    error: DomainError,
) -> Outcome:
    """The outcome a refused charge's key holds by now, else the refusal. A terminal that
    retries while its first try is in flight is checked before the first commits (the key is
    claimed in the batch, not before the checks), so its code can look used or its payer's
    money spent: by its own first try, whose outcome is then the answer (as a replay's)."""
    if key is None or error.code.startswith(("idempotency_", "invalid_idempotency")):
        raise error
    claim = idempotency.claim_for(
        actor_id=actor_id,
        operation=operation,
        key=key,
        request=content,
        key_max_chars=settings.idempotency.key_max_chars,
    )
    found = idempotency.stored_outcome(session=session, claim=claim)
    if found is None:
        raise error
    db.settle_refusal(session, error)  # keep only the kept writes (the key's use, audited)
    return found


CODE_USES = cast(Table, CodeUse.__table__)


@router.get("/charges", response_model=ChargesOut, responses=ROLE_403)
def list_charges(
    principal: PrincipalDep,
    session: SessionDep,
    registry: AssetsDep,
    since: datetime | None = None,
    until: datetime | None = None,
    status: Literal["completed", "partially_refunded", "refunded"] | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ChargesOut:
    """The merchant's charges, newest first (``since`` inclusive, ``until`` exclusive)."""
    principal.require("read")
    page = charges.search(
        session=session,
        merchant=principal.merchant,
        since=since,
        until=until,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return ChargesOut(
        items=[ChargeOut.model_validate(charges.charge_data(r, registry)) for r in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/charges.csv",
    response_class=StreamingResponse,
    responses={**ROLE_403, 200: {"content": {"text/csv": {}}}},
)
def export_charges(
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    since: datetime | None = None,
    until: datetime | None = None,
    status: Literal["completed", "partially_refunded", "refunded"] | None = None,
) -> StreamingResponse:
    """The merchant's charges as CSV (roles with ``export``: not a cashier)."""
    principal.require("export")
    lines: Iterator[str] = iter(
        list(
            charges.export_csv(
                session=session,
                merchant=principal.merchant,
                assets=registry,
                settings=settings,
                since=since,
                until=until,
                status=status,
            )
        )
    )
    return StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="charges.csv"'},
    )


@router.get(
    "/charges/{charge_id}",
    response_model=ChargeOut,
    responses={**ROLE_403, 404: {"description": "`charge_not_found`"}},
)
def read_charge(
    charge_id: Annotated[str, Path(min_length=1, max_length=32)],
    principal: PrincipalDep,
    session: SessionDep,
    registry: AssetsDep,
) -> ChargeOut:
    """One of the merchant's charges (another merchant's: 404)."""
    principal.require("read")
    row = charges.get_charge(session=session, merchant=principal.merchant, charge_id=charge_id)
    return ChargeOut.model_validate(charges.charge_data(row, registry))


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    charge_id: str = Field(min_length=1, max_length=32)
    amount: Amount


@router.post("/refunds", status_code=201, response_model=MovedOut, responses=MOVE_ERRORS)
def create_refund(
    body: RefundIn,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Refund part or all of a charge (never more than what is left of it); the fee is
    refunded pro rata (``merchants.charges``)."""
    principal.require("refund")
    merchant = principal.merchant

    def work(current: Session) -> Outcome:
        row = charges.refund(
            session=current,
            merchant=merchant,
            charge_id=body.charge_id,
            amount=body.amount,
            settings=settings,
            assets=registry,
            actor=principal.actor,
        )
        return Outcome(id=row.id, status="completed")

    return _once(request, session, settings, merchant.id, idempotency_key, body, work)


class QrIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount = None
    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None


class QrOut(BaseModel):
    payload: str


@router.post(
    "/qr",
    status_code=201,
    response_model=QrOut,
    responses={
        **ROLE_403,
        422: {
            "description": "`asset_not_accepted`, `invalid_amount`, `unknown_asset`, "
            "`merchant_id_required`"
        },
    },
)
def create_qr(
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    body: QrIn | None = None,
) -> JSONResponse:
    """The merchant's EMV MPM code: static without ``amount``, dynamic (single-use) with it."""
    principal.require("qr")
    body = body or QrIn()
    payload = charges.qr_payload(
        session=session,
        merchant=principal.merchant,
        settings=settings,
        assets=registry,
        amount=body.amount,
        asset=body.asset,
    )
    return JSONResponse({"payload": payload}, status_code=201)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=500, pattern=r"^https?://[^\s]+$")
    rotate: bool = False


class WebhookOut(BaseModel):
    url: str
    secret: str
    signature_header: str


@router.put("/webhook", response_model=WebhookOut, responses=ROLE_403)
def set_webhook(
    body: WebhookIn, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> WebhookOut:
    """Where payment notifications go (R-MERCH-4) and the secret that signs them (``rotate``:
    a new secret; the old one stops at once). The signature: see ``merchants.webhooks``."""
    principal.require("settings")
    merchant = session.get_one(Merchant, principal.merchant.id, with_for_update=True)
    merchant.webhook_url = body.url
    if body.rotate:
        merchant.webhook_secret_version += 1
    session.flush()
    return WebhookOut(
        url=body.url,
        secret=webhooks.secret_for(merchant, settings.secret_key),
        signature_header=webhooks.SIGNATURE_HEADER,
    )


# --------------------------------------------------------------------------- users pay QR


class PayEmvIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payload: str = Field(min_length=1, max_length=512)
    amount: Amount = None


@pay_router.post(
    "/emv",
    status_code=201,
    response_model=MovedOut,
    responses={
        **MOVE_ERRORS,
        401: {"description": "no valid token (`unauthorized`, `invalid_token`)"},
        403: {"description": "`wallet_users_only`, `email_unverified`, `merchant_suspended`"},
    },
)
def pay_emv(
    body: PayEmvIn,
    request: Request,
    user: WalletUserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Pay a merchant's QR code: a static code needs ``amount``; a dynamic one carries it
    and is paid once (``qr_used``)."""

    def work(current: Session) -> Outcome:
        row = charges.pay_qr(
            session=current,
            user=user,
            payload=body.payload,
            amount=body.amount,
            settings=settings,
            assets=registry,
        )
        return Outcome(id=row.id, status=row.status)

    return _once(request, session, settings, user.id, idempotency_key, body, work)
