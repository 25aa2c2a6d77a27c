"""Merchants in the console (issue #13, item 2): the list (newest first, by status and region,
keyset pages) with, for the roles holding ``merchants.manage`` (admins), a form per merchant to
suspend it or reinstate it, each with a reason.

The page calls ``merchants.service`` exactly as ``/v1/admin/merchants`` does (``search``,
``suspend``, ``reinstate``: audited with the reason; suspending twice is refused). Reading is
``merchants`` (admin, support, finance). Every form has its CSRF token (the console's router);
after a change: 303 back to the list (POST, redirect, GET); a refusal shows the list again with
a sentence and the refusal's status, nothing written but the audit trail."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import SessionDep, origin_of
from strongroom.errors import DomainError
from strongroom.merchants import service as merchants
from strongroom.merchants.models import Merchant
from strongroom.web import core
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import N_, Lang, lang_of

router = APIRouter(prefix=PREFIX)
PATH: Final = "/console/merchants"
PAGE_SIZE: Final = 25
ReaderGuard = Annotated[Operator, Depends(ConsoleGuard("merchants"))]
ManagerGuard = Annotated[Operator, Depends(ConsoleGuard("merchants.manage"))]
MerchantIdPath = Annotated[str, Path(pattern=r"^m_[0-9a-f]{16}$", max_length=18)]
STATUS_NAMES: Final = {merchants.ACTIVE: N_("Active"), merchants.SUSPENDED: N_("Suspended")}
REGION_NAMES: Final = {"HK": N_("Hong Kong"), "CN": N_("Mainland China")}
REFUSALS: Final = {
    "merchant_already_suspended": N_("This merchant is suspended already. Nothing changed."),
    "merchant_not_suspended": N_("This merchant is not suspended. Nothing changed."),
    "invalid_reason": N_("Give a reason of 1 to %(max)s characters."),
    "invalid_cursor": N_("That page link is not valid: start from the first page."),
}
UNKNOWN_REFUSAL: Final = N_("That did not work. Check what you entered and try again.")
DONE: Final = {
    "suspended": N_("The merchant is suspended."),
    "reinstated": N_("The merchant is active again."),
}


class ReasonForm(BaseModel):
    reason: str = Field(default="", max_length=merchants.REASON_MAX_CHARS)


def _refusal(lang: Lang, error: DomainError) -> str:
    text = lang.gettext(REFUSALS.get(error.code, UNKNOWN_REFUSAL))
    return text % {"max": merchants.REASON_MAX_CHARS} if "%(" in text else text


def _row(lang: Lang, merchant: Merchant) -> dict[str, Any]:
    return {
        "id": merchant.id,
        "name": merchant.name,
        "mcc": merchant.mcc,
        "region": lang.gettext(REGION_NAMES.get(merchant.region, merchant.region)),
        "currency": merchants.currency_of(merchant),
        "city": merchant.city,
        "status": merchant.status,
        "status_name": lang.gettext(STATUS_NAMES.get(merchant.status, merchant.status)),
        "created": lang.when(merchant.created_at),
        "suspended_at": lang.when(merchant.suspended_at) if merchant.suspended_at else "",
        "suspended_reason": merchant.suspended_reason or "",
    }


def _list(
    request: Request,
    operator: Operator,
    session: Session,
    *,
    status: str | None,
    region: str | None,
    cursor: str | None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lang = lang_of(request)
    try:
        found = merchants.search(
            session=session, limit=PAGE_SIZE, status=status, region=region, cursor=cursor
        )
    except DomainError as refused:  # a made-up cursor: the first page, and say so
        error, status_code = _refusal(lang, refused), refused.status
        found = merchants.search(session=session, limit=PAGE_SIZE, status=status, region=region)
        cursor = None
    done = request.query_params.get("done", "")
    return page(
        request,
        "console/merchants.html",
        {
            "rows": [_row(lang, m) for m in found.items],
            "next_cursor": found.next_cursor,
            "cursor": cursor,
            "status": status or "",
            "region": region or "",
            "statuses": list(STATUS_NAMES.items()),
            "regions": list(REGION_NAMES.items()),
            "may_manage": operator.may("merchants.manage"),
            "error": error,
            "done": lang.gettext(DONE[done]) if done in DONE else None,
            "reason_max": merchants.REASON_MAX_CHARS,
        },
        operator=operator,
        current=PATH,
        status_code=status_code,
    )


@router.get("/merchants", response_class=HTMLResponse)
def merchants_page(
    operator: ReaderGuard,
    request: Request,
    session: SessionDep,
    status: Literal["active", "suspended", ""] = "",
    region: Literal["HK", "CN", ""] = "",
    cursor: Annotated[str | None, Query(max_length=merchants.CURSOR_MAX_CHARS)] = None,
) -> HTMLResponse:
    return _list(
        request, operator, session, status=status or None, region=region or None, cursor=cursor
    )


def _change(
    action: Literal["suspended", "reinstated"],
    merchant_id: str,
    body: ReasonForm,
    operator: Operator,
    request: Request,
    session: Session,
) -> Response:
    change = merchants.suspend if action == "suspended" else merchants.reinstate
    try:
        change(
            session=session,
            operator=operator.user,
            merchant_id=merchant_id,
            reason=body.reason,
            origin=origin_of(request),
        )
    except DomainError as refused:
        if refused.status == 404:
            raise
        error = db.settle_refusal(session, refused)
        return _list(
            request,
            operator,
            session,
            status=None,
            region=None,
            cursor=None,
            error=_refusal(lang_of(request), error),
            status_code=error.status,
        )
    return core.secure_headers(RedirectResponse(f"{PATH}?done={action}", status_code=303))


@router.post("/merchants/{merchant_id}/suspend", response_class=HTMLResponse)
def suspend(
    merchant_id: MerchantIdPath,
    body: Annotated[ReasonForm, Form()],
    operator: ManagerGuard,
    request: Request,
    session: SessionDep,
) -> Response:
    """Suspend (admins): its keys, people and QR codes are refused; settlements still pay."""
    return _change("suspended", merchant_id, body, operator, request, session)


@router.post("/merchants/{merchant_id}/reinstate", response_class=HTMLResponse)
def reinstate(
    merchant_id: MerchantIdPath,
    body: Annotated[ReasonForm, Form()],
    operator: ManagerGuard,
    request: Request,
    session: SessionDep,
) -> Response:
    return _change("reinstated", merchant_id, body, operator, request, session)
