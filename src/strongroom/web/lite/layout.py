"""What every Lite page shares: the navigation and ``page()``, which renders a screen in the
layout (``lite/layout.html``) with the signed-in user.

A navigation entry is shown once its screen exists: ``NAVIGATION`` lists every Lite screen of
issue #5, and ``page()`` keeps those whose path is a GET route of the app, so a new screen
appears in the navigation as soon as its router is mounted (``lite.SCREENS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse

from strongroom.web import core
from strongroom.web.i18n import N_
from strongroom.web.sessions import SignedIn

PREFIX: Final = "/app"
"""Every screen module's ``router = APIRouter(prefix=PREFIX)``."""
HOME: Final = "/app/"
RESERVES_PAGE: Final = "/reserves/verify"


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str  # a msgid, translated by the template
    icon: str  # a symbol of lite/icons.html


NAVIGATION: Final = (
    NavItem(HOME, N_("Home"), "home"),
    NavItem("/app/topup", N_("Top up"), "plus"),
    NavItem("/app/send", N_("Send"), "send"),
    NavItem("/app/pay", N_("Pay"), "qr"),
    NavItem("/app/convert", N_("Convert"), "refresh"),
    NavItem("/app/gifts", N_("Gifts"), "gift"),
    NavItem("/app/history", N_("History"), "list"),
    NavItem("/app/cards", N_("Virtual cards"), "card"),
    NavItem("/app/kyc", N_("Verify identity"), "id"),
    NavItem("/app/bank-accounts", N_("Bank accounts"), "bank"),
    NavItem("/app/withdraw", N_("Withdraw"), "send"),
    NavItem("/app/security", N_("Security"), "shield"),
    NavItem(RESERVES_PAGE, N_("My proof of reserves"), "check"),
)


def navigation(request: Request) -> list[NavItem]:
    """The entries of ``NAVIGATION`` whose screen is mounted on this app (worked out once)."""
    return core.mounted(request, NAVIGATION, "lite_navigation")


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    user: SignedIn | None,
    current: str | None = None,
    status_code: int = 200,
    cache_control: str | None = core.NO_STORE,
) -> HTMLResponse:
    """A Lite screen: ``template`` (extending ``lite/layout.html``) with ``user`` (None on the
    sign-in pages), the navigation and ``current``, the path of the entry to highlight."""
    values = {
        "user": user.user if user is not None else None,
        "nav": navigation(request) if user is not None else [],
        "current": current,
        "reserves_page": RESERVES_PAGE,
        **(context or {}),
    }
    return core.render(
        request, template, values, status_code=status_code, cache_control=cache_control
    )
