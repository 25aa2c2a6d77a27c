"""Home: the user's balance in each asset, total and available (issue #5, phase 1).

Balances are read from the ledger's wallet accounts and computed with the ledger's own
``AccountState`` rules (total = credits - debits posted; available = total - pending debits -
locked), exactly as ``GET /v1/balances`` shows them; then formatted for the user's language
from the exact minor units. ``/app/balances`` is the same list alone, for HTMX's refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom.api import AssetsDep, SessionDep
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.money import AssetRegistry
from strongroom.web import core
from strongroom.web.i18n import Lang, lang_of
from strongroom.web.lite.layout import HOME, PREFIX, page
from strongroom.web.sessions import SignedInDep

router = APIRouter(prefix=PREFIX)


@dataclass(frozen=True, slots=True)
class BalanceView:
    asset: str
    total: str
    available: str
    all_available: bool
    locked: str | None


def balances(
    *, session: Session, user: User, registry: AssetRegistry, lang: Lang
) -> list[BalanceView]:
    """One row per wallet the user has, by asset code, formatted for ``lang``: the ledger's
    ``Balance``, exactly as ``GET /v1/balances`` shows it."""
    views = []
    for held in ledger.wallet_balances(session=session, user_id=user.id):
        scale = registry.get(held.asset).scale
        views.append(
            BalanceView(
                asset=held.asset,
                total=lang.amount(held.total_minor, scale),
                available=lang.amount(held.available_minor, scale),
                all_available=held.available_minor == held.total_minor,
                locked=lang.amount(held.locked_minor, scale) if held.locked_minor else None,
            )
        )
    return views


@router.get("", include_in_schema=False)
def app_root() -> Response:
    """``/app`` → ``/app/``: the PWA's scope is ``/app/``, so its start page is inside it."""
    return core.secure_headers(RedirectResponse(HOME, status_code=308))


@router.get("/", response_class=HTMLResponse)
def home(
    user: SignedInDep, request: Request, session: SessionDep, registry: AssetsDep
) -> HTMLResponse:
    rows = balances(session=session, user=user.user, registry=registry, lang=lang_of(request))
    return page(request, "lite/home.html", {"balances": rows}, user=user, current=HOME)


@router.get("/balances", response_class=HTMLResponse)
def balances_fragment(
    user: SignedInDep, request: Request, session: SessionDep, registry: AssetsDep
) -> HTMLResponse:
    """The balance list alone (``hx-get`` from the home screen's refresh button)."""
    rows = balances(session=session, user=user.user, registry=registry, lang=lang_of(request))
    return core.render(request, "lite/_balances.html", {"balances": rows})
