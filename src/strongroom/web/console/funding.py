"""The connectors' side of the console (issue #12): webhook deliveries as they arrived (raw:
the headers that matter and the body, whether the signature held, what came of it) and the
reconciliation of the ledger against the connectors' records (``funding.reconcile``, what
``strongroom ledger reconcile`` reports). Finance and admins only; every visit is in the audit
log (``ConsoleGuard``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from strongroom.api import SessionDep, SettingsDep
from strongroom.funding import connectors, webhooks
from strongroom.funding.models import WebhookDelivery
from strongroom.funding.reconcile import reconcile
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import Lang, lang_of

router = APIRouter(prefix=PREFIX)
WEBHOOKS: Final = "/console/webhooks"
RECONCILIATION: Final = "/console/reconciliation"
PAGE_SIZE: Final = 50
BODY_SHOWN_CHARS: Final = 4000


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    received: str
    connector: str
    remote_address: str
    signature_ok: bool
    outcome: str
    topup_id: str
    headers: str
    body: str


def _row(delivery: WebhookDelivery, lang: Lang) -> DeliveryRow:
    return DeliveryRow(
        id=delivery.id,
        received=lang.when(delivery.received_at),
        connector=delivery.connector,
        remote_address=delivery.remote_address or "",
        signature_ok=delivery.signature_ok,
        outcome=delivery.outcome,
        topup_id=delivery.topup_id or "",
        headers=delivery.headers_json,
        body=delivery.body[:BODY_SHOWN_CHARS],
    )


@router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(
    operator: Annotated[Operator, Depends(ConsoleGuard("webhooks"))],
    request: Request,
    session: SessionDep,
    connector: Annotated[str, Query(max_length=32)] = "",
    cursor: Annotated[int | None, Query(ge=1, lt=2**53)] = None,
) -> HTMLResponse:
    """Deliveries newest first, a page at a time, by connector."""
    lang = lang_of(request)
    found = webhooks.deliveries(
        session=session, connector=connector.strip() or None, before=cursor, limit=PAGE_SIZE
    )
    values = {
        "rows": [_row(delivery, lang) for delivery in found.items],
        "next_cursor": found.next_before,
        "cursor": cursor,
        "connector": connector.strip(),
        "connectors": list(connectors.WEBHOOK_CONNECTORS),
    }
    return page(request, "console/webhooks.html", values, operator=operator, current=WEBHOOKS)


@router.get("/reconciliation", response_class=HTMLResponse)
def reconciliation_page(
    operator: Annotated[Operator, Depends(ConsoleGuard("reconciliation"))],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """The breaks between the ledger and the connectors' records, computed now."""
    report = reconcile(session=session, settings=settings)
    return page(
        request,
        "console/reconciliation.html",
        {"report": report},
        operator=operator,
        current=RECONCILIATION,
    )
