"""Pending payouts (issue #12 item 9): the withdrawals the payout connector has not yet paid or
failed, oldest first, with where each attempt stands (``queued``: not yet asked; ``sent``: the
attempt is on record and the connector answers on the next poll; ``resend``: the connector did
not know it, it is sent again; ``stuck``: still unknown after the most sends, for an operator).
Finance and admins only; every visit is in the audit log (``ConsoleGuard``). Read only: the
worker moves them on."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from strongroom.api import AssetsDep, SessionDep
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import lang_of
from strongroom.withdrawals import service

router = APIRouter(prefix=PREFIX)
PAYOUTS: Final = "/console/payouts"
PAGE_SIZE: Final = 100


@router.get("/payouts", response_class=HTMLResponse)
def payouts_page(
    operator: Annotated[Operator, Depends(ConsoleGuard("payouts"))],
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """The oldest pending payouts (at most ``PAGE_SIZE``)."""
    lang = lang_of(request)
    rows = [
        {
            "id": w.id,
            "user_id": w.user_id,
            "kind": w.kind,
            "amount": lang.amount(w.amount_minor, registry.get(w.asset).scale),
            "asset": w.asset,
            "destination": service.masked_destination(w),
            "state": w.payout_state,
            "attempts": f"{w.sends}/{w.polls}",
            "created": lang.when(w.created_at),
        }
        for w in service.open_payouts(session=session, limit=PAGE_SIZE)
    ]
    return page(request, "console/payouts.html", {"rows": rows}, operator=operator, current=PAYOUTS)
