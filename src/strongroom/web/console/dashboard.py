"""The dashboard: how many users, today's volume per asset (UTC), the email outbox's backlog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from strongroom.api import AssetsDep, SessionDep
from strongroom.db import utcnow
from strongroom.web.console import queries
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import HOME, PREFIX, page
from strongroom.web.i18n import lang_of

router = APIRouter(prefix=PREFIX)


@dataclass(frozen=True, slots=True)
class VolumeView:
    asset: str
    amount: str


@router.get("/", response_class=HTMLResponse)
def dashboard(
    operator: Annotated[Operator, Depends(ConsoleGuard("dashboard"))],
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    lang = lang_of(request)
    now = utcnow()
    volume = [
        VolumeView(asset=asset, amount=lang.amount(total, registry.get(asset).scale))
        for asset, total in queries.volume_today(session=session, now=now).items()
    ]
    values = {
        "counts": queries.user_counts(session=session),
        "volume": volume,
        "day": queries.start_of_day_utc(now).date().isoformat(),
        "backlog": queries.outbox_backlog(session=session),
        "may_outbox": operator.may("outbox"),
    }
    return page(request, "console/dashboard.html", values, operator=operator, current=HOME)
