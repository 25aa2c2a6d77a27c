"""What every console page shares: the navigation, ``page()`` (a screen in
``console/layout.html`` with the operator), and the extra values the console's error pages need.

A navigation entry is shown when the operator's role may use its screen (``access.ACCESS``),
its GET route is mounted, and, for the inbox, the app runs as the demo with a mail sink
(``inbox.directory``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse

from strongroom.web import core
from strongroom.web.console import inbox
from strongroom.web.console.access import Operator, operator_of
from strongroom.web.i18n import N_

PREFIX: Final = "/console"
"""Every screen module's ``router = APIRouter(prefix=PREFIX)``."""
HOME: Final = "/console/"
SIGN_IN: Final = "/console/signin"


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str  # a msgid, translated by the template
    screen: str  # a key of access.ACCESS


NAVIGATION: Final = (
    NavItem(HOME, N_("Dashboard"), "dashboard"),
    NavItem("/console/users", N_("Users"), "users"),
    NavItem("/console/kyc", N_("KYC review"), "kyc"),
    NavItem("/console/adjustments", N_("Adjustments"), "adjustments"),
    NavItem("/console/fx", N_("FX rates"), "fx.rates"),
    NavItem("/console/webhooks", N_("Webhook deliveries"), "webhooks"),
    NavItem("/console/reconciliation", N_("Reconciliation"), "reconciliation"),
    NavItem("/console/payouts", N_("Pending payouts"), "payouts"),
    NavItem("/console/merchants", N_("Merchants"), "merchants"),
    NavItem("/console/audit", N_("Audit log"), "audit"),
    NavItem("/console/outbox", N_("Email outbox"), "outbox"),
    NavItem("/console/inbox", N_("Inbox"), "inbox"),
)
ROLE_NAMES: Final = {
    "admin": N_("Administrator"),
    "support": N_("Support"),
    "finance": N_("Finance"),
    "kyc_reviewer": N_("KYC reviewer"),
}


def _mounted(request: Request) -> list[NavItem]:
    """The entries of ``NAVIGATION`` whose screen is mounted on this app (worked out once)."""
    return core.mounted(request, NAVIGATION, "console_navigation")


def navigation(request: Request, operator: Operator | None) -> list[NavItem]:
    """The entries ``operator`` may use on this app (none for a visitor)."""
    if operator is None:
        return []
    return [
        item
        for item in _mounted(request)
        if operator.may(item.screen)
        and (item.screen != "inbox" or inbox.directory(request) is not None)
    ]


def with_query(request: Request, **changes: str | None) -> str:
    """This page's path and query with ``changes`` (None removes a parameter): the paging and
    filter links keep every other filter as it is."""
    params = dict(request.query_params)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    query = urlencode(params)
    return f"{request.url.path}?{query}" if query else request.url.path


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    operator: Operator | None,
    current: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A console screen: ``template`` (extending ``console/layout.html``) with ``operator``
    (None on the sign-in pages), the navigation and ``current``, the entry to highlight."""
    values = {
        "operator": operator,
        "role_name": ROLE_NAMES.get(operator.role, "") if operator is not None else "",
        "nav": navigation(request, operator),
        "current": current,
        "link": partial(with_query, request),
        **(context or {}),
    }
    return core.render(request, template, values, status_code=status_code)


def error_context(request: Request) -> dict[str, Any]:
    """The layout's values on an error page: the navigation of the operator a guard let in
    (if one did); a visitor's "back" link goes to the sign-in page."""
    operator = operator_of(request)
    return {
        "operator": operator,
        "role_name": ROLE_NAMES.get(operator.role, "") if operator is not None else "",
        "nav": navigation(request, operator),
        "current": None,
        "home": HOME if operator is not None else SIGN_IN,
    }
