"""The pay screen (R-CODE-1): ``/app/pay`` shows the user's current payment code as a QR code
(segno), a Code 128 barcode (``web.code128``) and its 24 digits, and refreshes itself: the
code part (``/app/pay/code``, an htmx fragment) reloads when the next time step begins, so the
code on screen always has at least one step of its 60 seconds left. Without JavaScript the
"New code" link reloads the page.

The code on the page is the user's server-held default device's
(``paycodes.service.issue_code``, as ``POST /v1/payment-codes`` without a device): the server
computes it. "Keep codes on this device" (``POST /app/pay/device``) registers
a device for the browser and hands its secret to ``static/web/paycode.js``, which keeps it in
localStorage and computes codes itself (Web Crypto) on the offline page the service worker
serves without a network.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from typing import Any, Final

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from strongroom import db
from strongroom.api import SessionDep, SettingsDep, origin_of
from strongroom.db import utcnow
from strongroom.errors import DomainError
from strongroom.paycodes import domain
from strongroom.paycodes import service as paycodes
from strongroom.settings import Settings
from strongroom.web import code128, core
from strongroom.web.i18n import N_, lang_of
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/pay"
DEVICE_NAME: Final = "Lite app in a browser"
TOO_MANY: Final = N_("You have too many devices for payment codes. Remove one in the app first.")
FAILED: Final = N_("This device could not be set up for offline codes. Try again.")
REFRESH_MARGIN_S: Final = 1
"""Seconds after the next step begins that the page asks for its code (the server's clock
must be in that step already)."""


def qr_data_uri(text: str) -> str:
    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="svg", scale=6, border=4)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def grouped(code: str) -> str:
    """``8888 0001 0000 0428 7038 5432``: easier to read out at a till."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def _code(
    request: Request, user: SignedIn, session: Any, settings: Settings, now: datetime
) -> dict[str, Any]:
    codes = settings.payment_codes
    issued = paycodes.issue_code(
        session=session, user=user.user, settings=codes, keyring=settings.auth.vault, now=now
    )
    next_step = domain.step_start(domain.step_of(now, codes.step_s) + 1, codes.step_s)
    refresh_s = max(int((next_step - now).total_seconds()) + REFRESH_MARGIN_S, 1)
    return {
        "code": issued.code,
        "digits": grouped(issued.code),
        "qr": qr_data_uri(issued.code),
        "barcode": code128.data_uri(issued.code),
        "expires": lang_of(request).when(issued.expires_at),
        "expires_iso": issued.expires_at.isoformat(),
        "refresh_s": refresh_s,
    }


@router.get("/pay", response_class=HTMLResponse)
def pay_page(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    context = _code(request, user, session, settings, utcnow())
    return page(request, "lite/pay.html", context, user=user, current=PATH)


@router.post("/pay/device", response_class=HTMLResponse)
def keep_on_device(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """Register a device for this browser and hand its secret to paycode.js, once (this answer
    is the only place it appears; ``no-store``). Refused (the devices limit): the pay page with
    the reason, nothing written."""
    codes = settings.payment_codes
    device: dict[str, Any] | None = None
    error: str | None = None
    status_code = 200
    try:
        registered = paycodes.register_device(
            session=session,
            user=user.user,
            name=DEVICE_NAME,
            settings=codes,
            keyring=settings.auth.vault,
            origin=origin_of(request),
        )
        device = {
            "device_id": registered.device.id,
            "secret": registered.secret,
            "locator": f"{registered.device.locator:0{domain.LOCATOR_DIGITS}d}",
            "issuer_id": codes.issuer_id,
            "step_s": codes.step_s,
        }
    except DomainError as refused:
        settled = db.settle_refusal(session, refused)
        message = TOO_MANY if settled.code == "devices_limit" else FAILED
        error = lang_of(request).gettext(message)
        status_code = settled.status
    if request.headers.get("HX-Request") == "true":
        part = {"device": device, "error": error}
        # htmx swaps 2xx answers only: a refusal is shown in the part it replaces
        return core.render(request, "lite/_paycode_offline.html", part)
    context = _code(request, user, session, settings, utcnow())
    context.update(device=device, error=error)
    return page(request, "lite/pay.html", context, user=user, current=PATH, status_code=status_code)


@router.get("/pay/code", response_class=HTMLResponse)
def pay_code(
    user: SignedInDep, request: Request, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The code part alone (htmx swaps it in place of the old one)."""
    context = _code(request, user, session, settings, utcnow())
    return core.render(request, "lite/_paycode.html", context)
