"""A pending top-up's page (issue #12): ``/app/topup/<id>``, the user's own only.

What the user pays with: the FPS reference, the card processor's session, or the store barcode
(a QR code of its digits, drawn by segno as an SVG ``data:`` URI, with a countdown to the end
of its 15 minutes in ``app.js``), and the status as it stands: pending, completed, failed,
expired. While pending, htmx reloads the status part every few seconds; without JavaScript the
page's "Refresh" link does the same.
"""

from __future__ import annotations

from typing import Annotated, Final

import segno
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from strongroom.api import AssetsDep, SessionDep
from strongroom.funding import connectors, topups
from strongroom.funding.models import Topup
from strongroom.money import AssetRegistry
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedInDep

router = APIRouter(prefix=PREFIX)
STATUS_LABELS: Final = {
    "pending": N_("Waiting for your payment"),
    "completed": N_("Completed: the money is in your wallet"),
    "failed": N_("Failed: no money moved"),
    "expired": N_("Expired: no money moved"),
}
POLL_S: Final = 5


def barcode_qr(digits: str) -> str:
    """The store barcode as a QR code (an SVG ``data:`` URI the CSP allows)."""
    return str(segno.make(digits, error="m").svg_data_uri(scale=5, border=2))


def view(record: Topup, registry: AssetRegistry, request: Request) -> dict[str, object]:
    lang = lang_of(request)
    scale = registry.get(record.asset).scale
    status = topups.api_status(record)
    received = record.received_minor
    return {
        "id": record.id,
        "channel": record.channel,
        "status": status,
        "status_label": lang.gettext(STATUS_LABELS.get(status, STATUS_LABELS["pending"])),
        "amount": lang.amount(record.amount_minor, scale),
        "received": None if received is None else lang.amount(received, scale),
        "asset": record.asset,
        "reference": record.external_reference,
        "expires_at": topups.aware(record.expires_at).isoformat(),
        "expires_when": lang.when(record.expires_at),
        "qr": barcode_qr(record.external_reference)
        if record.channel == connectors.STORE_CASH and status == "pending"
        else None,
        "path": f"{PREFIX}/topup/{record.id}",
        "poll_s": POLL_S,
    }


TopupIdPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")]


@router.get("/topup/{topup_id}", response_class=HTMLResponse)
def pending_page(
    topup_id: TopupIdPath,
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    """The user's top-up (another user's answers 404 as a missing one does)."""
    record = topups.of_user(session=session, user=user.user, topup_id=topup_id)
    return page(
        request,
        "lite/topup_pending.html",
        {"topup": view(record, registry, request)},
        user=user,
        current="/app/topup",
    )
