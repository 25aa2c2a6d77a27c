"""The merchant's daily settlements (R-MERCH-3): the list (newest business day first: gross,
fees, refunds, net, what was paid out and the payout's status), one settlement's detail, and
its report CSV (as ``GET /v1/merchant/settlements/{id}/report.csv`` answers).

Reading needs ``read`` (every role: a cashier sees what the day paid), the report ``export``
(the roles that answer for the books), as the API's role table says; another merchant's
settlement is a 404, as in the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Final

from babel.dates import format_date
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.money import AssetRegistry
from strongroom.settlement import service as settlement
from strongroom.settlement.models import Settlement
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.merchant.layout import PREFIX, Member, guard, page

router = APIRouter(prefix=PREFIX)
PATH: Final = "/merchant/settlements"
SettlementIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^st_[0-9a-f]+$")]
STATUS_NAMES: Final = {
    settlement.DUE: N_("Due"),
    settlement.PROCESSING: N_("Being paid"),
    settlement.PAID: N_("Paid out"),
    settlement.FAILED: N_("Payout failed: retrying"),
    settlement.NOTHING_DUE: N_("Nothing to pay"),
}


def row_of(lang: Lang, row: Settlement, registry: AssetRegistry) -> dict[str, Any]:
    """A settlement as the pages show it (amounts and the day per locale)."""
    scale = registry.get(row.asset).scale
    return {
        "id": row.id,
        "day": format_date(row.business_day, "medium", locale=lang.locale),
        "asset": row.asset,
        "status": row.status,
        "status_name": STATUS_NAMES.get(row.status, row.status),
        "charges": lang.amount(row.charges_minor, scale),
        "charges_count": row.charges_count,
        "fees": lang.amount(row.fees_minor, scale),
        "refunds": lang.amount(row.refunds_minor, scale),
        "refunds_count": row.refunds_count,
        "net": lang.amount(row.net_minor, scale),
        "paid": lang.amount(row.amount_minor, scale),
        "attempts": row.attempts,
        "paid_at": lang.when(row.paid_at) if row.paid_at is not None else None,
        "failed": row.status == settlement.FAILED,
    }


@router.get("/settlements", response_class=HTMLResponse)
def settlements_page(
    request: Request, session: SessionDep, registry: AssetsDep, member: Member = guard("read")
) -> HTMLResponse:
    """The last 100 business days with activity, newest first."""
    lang = lang_of(request)
    rows = settlement.list_for(session=session, merchant=member.principal.merchant)
    return page(
        request,
        "merchant/settlements.html",
        {"rows": [row_of(lang, r, registry) for r in rows]},
        member=member,
        current=PATH,
    )


@router.get("/settlements/{settlement_id}", response_class=HTMLResponse)
def settlement_page(
    settlement_id: SettlementIdPath,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    member: Member = guard("read"),
) -> HTMLResponse:
    row = settlement.get_for(
        session=session, merchant=member.principal.merchant, settlement_id=settlement_id
    )
    return page(
        request,
        "merchant/settlement.html",
        {"row": row_of(lang_of(request), row, registry)},
        member=member,
        current=PATH,
    )


@router.get("/settlements/{settlement_id}/report.csv")
def settlement_report(
    settlement_id: SettlementIdPath,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    member: Member = guard("export"),
) -> StreamingResponse:
    """Each charge and refund of the day, then the totals (``settlement.report_csv``)."""
    row = settlement.get_for(
        session=session, merchant=member.principal.merchant, settlement_id=settlement_id
    )
    lines: Iterator[str] = iter(
        list(
            settlement.report_csv(
                session=session, row=row, assets=registry, timezone=settings.settlement.timezone
            )
        )
    )
    response = StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{row.id}.csv"'},
    )
    core.secure_headers(response)
    return response
