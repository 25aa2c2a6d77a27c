"""The merchant's charges: the list (newest first, by status, keyset paged), one charge with
its refund form, the refund itself and the CSV export.

Refunds run exactly as ``POST /v1/merchant/refunds`` does (``movements.run_once`` around
``merchants.charges.refund``, the form's idempotency key scoped to the merchant and this
path), so a double click refunds once. Rights are ``merchants.roles``' (``read``, ``refund``,
``export``): a cashier sees charges but gets the 403 page for refunds and exports; another
merchant's charge is a 404, as in the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.errors import DomainError, InvalidAmount
from strongroom.merchants import charges
from strongroom.merchants.models import Charge
from strongroom.money import AssetRegistry
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite import forms
from strongroom.web.merchant.layout import HOME, PREFIX, Member, guard, page

router = APIRouter(prefix=PREFIX)
ChargeIdPath = Annotated[str, Path(min_length=1, max_length=32)]
Status = Literal["completed", "partially_refunded", "refunded"]
STATUS_NAMES: Final = {
    "completed": N_("Paid"),
    "partially_refunded": N_("Partly refunded"),
    "refunded": N_("Refunded"),
}
METHOD_NAMES: Final = {
    "payment_code": N_("Payment code"),
    "token": N_("Virtual card"),
    "emv": N_("QR code"),
}
REFUSALS: Final = {
    "refund_exceeds_charge": N_(
        "That is more than what is left to refund: at most %(refundable)s."
    ),
    "refund_window_closed": N_("This charge is too old to refund."),
    "idempotency_key_reused": N_(
        "This form was already sent with other values. Reload the charge before trying again."
    ),
    "idempotency_key_in_progress": N_("This refund is being made: reload the page."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")
AMOUNT_REFUSAL: Final = N_("Enter an amount such as 12.50.")
REFUND_OPERATION: Final = "POST /merchant/charges/refund"
"""The idempotency scope of the refund form (the charge is in the request it guards)."""


class RefundForm(BaseModel):
    amount: str = Field(min_length=1, max_length=forms.FIELD_MAX_CHARS)
    idempotency_key: str = Field(min_length=8, max_length=forms.FIELD_MAX_CHARS)


def row_of(lang: Lang, row: Charge, registry: AssetRegistry) -> dict[str, Any]:
    """A charge as the pages show it (amounts per locale)."""
    scale = registry.get(row.asset).scale
    payer_scale = registry.get(row.payer_asset).scale
    return {
        "id": row.id,
        "when": lang.when(row.created_at),
        "status": row.status,
        "status_name": STATUS_NAMES.get(row.status, row.status),
        "method": METHOD_NAMES.get(row.method, row.method),
        "token_last4": row.token_last4,
        "asset": row.asset,
        "amount": lang.amount(row.amount_minor, scale),
        "fee": lang.amount(row.fee_minor, scale),
        "net": lang.amount(row.amount_minor - row.fee_minor, scale),
        "refunded": lang.amount(row.refunded_minor, scale),
        "refundable": lang.amount(row.amount_minor - row.refunded_minor, scale),
        "left_minor": row.amount_minor - row.refunded_minor,
        "payer_asset": row.payer_asset,
        "payer_amount": lang.amount(row.payer_amount_minor, payer_scale),
        "fx_rate": row.fx_rate,
    }


@router.get("/", response_class=HTMLResponse)
def charges_page(
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    member: Member = guard("read"),
    status: Status | None = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    lang = lang_of(request)
    found = charges.search(
        session=session, merchant=member.principal.merchant, status=status, cursor=cursor
    )
    return page(
        request,
        "merchant/charges.html",
        {
            "rows": [row_of(lang, r, registry) for r in found.items],
            "next_cursor": found.next_cursor,
            "status": status,
            "statuses": STATUS_NAMES,
        },
        member=member,
        current=HOME,
    )


def _charge_page(
    request: Request,
    session: Session,
    registry: AssetRegistry,
    member: Member,
    charge_id: str,
    *,
    error: str | None = None,
    amount: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    row = charges.get_charge(
        session=session, merchant=member.principal.merchant, charge_id=charge_id
    )
    return page(
        request,
        "merchant/charge.html",
        {
            "charge": row_of(lang_of(request), row, registry),
            "error": error,
            "amount": amount,
            "idempotency_key": forms.new_key(),
            "refunded_now": request.query_params.get("refunded") == "1",
        },
        member=member,
        current=HOME,
        status_code=status_code,
    )


@router.get("/charges/{charge_id}", response_class=HTMLResponse)
def charge_page(
    charge_id: ChargeIdPath,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    member: Member = guard("read"),
) -> HTMLResponse:
    return _charge_page(request, session, registry, member, charge_id)


def refusal(lang: Lang, error: DomainError) -> str:
    if isinstance(error, InvalidAmount) or error.code in ("invalid_amount", "unknown_asset"):
        return lang.gettext(AMOUNT_REFUSAL)
    message = REFUSALS.get(error.code, UNKNOWN_REFUSAL)
    values = {k: str(v) for k, v in error.details.items()}
    try:
        return lang.gettext(message) % values
    except (KeyError, ValueError):
        return lang.gettext(UNKNOWN_REFUSAL)


@router.post("/charges/{charge_id}/refund", response_class=HTMLResponse)
def refund(
    charge_id: ChargeIdPath,
    body: Annotated[RefundForm, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    member: Member = guard("refund"),
) -> Response:
    """Refund part or all of a charge, once per form; then back to the charge."""
    merchant = member.principal.merchant
    charges.get_charge(session=session, merchant=merchant, charge_id=charge_id)  # 404 first

    def work(current: Session) -> Outcome:
        made = charges.refund(
            session=current,
            merchant=merchant,
            charge_id=charge_id,
            amount=body.amount.strip(),
            settings=settings,
            assets=registry,
            actor=member.principal.actor,
        )
        return Outcome(id=made.id, status="completed")

    try:
        movements.run_once(
            session=session,
            settings=settings,
            actor_id=merchant.id,
            operation=REFUND_OPERATION,
            key=body.idempotency_key,
            request={"charge_id": charge_id, "amount": body.amount.strip()},
            work=work,
        )
    except DomainError as refused:
        error = db.settle_refusal(session, refused)
        return _charge_page(
            request,
            session,
            registry,
            member,
            charge_id,
            error=refusal(lang_of(request), error),
            amount=body.amount,
            status_code=error.status,
        )
    target = f"{PREFIX}/charges/{charge_id}?refunded=1"
    return core.secure_headers(RedirectResponse(target, status_code=303))


@router.get("/export", response_class=HTMLResponse)
def export_page(request: Request, member: Member = guard("export")) -> HTMLResponse:
    return page(
        request,
        "merchant/export.html",
        {"statuses": STATUS_NAMES},
        member=member,
        current="/merchant/export",
    )


@router.get("/export/charges.csv")
def export(
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    member: Member = guard("export"),
    status: Status | None = None,
) -> StreamingResponse:
    """The charges as CSV, as ``GET /v1/merchant/charges.csv`` answers."""
    lines: Iterator[str] = iter(
        list(
            charges.export_csv(
                session=session,
                merchant=member.principal.merchant,
                assets=registry,
                settings=settings,
                status=status,
            )
        )
    )
    response = StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="charges.csv"'},
    )
    core.secure_headers(response)
    return response
