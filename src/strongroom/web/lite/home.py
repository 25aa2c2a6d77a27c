"""Home: the user's balance in each asset, total and available (issue #5, phase 1).

Balances are read from the ledger's wallet accounts and computed with the ledger's own
``AccountState`` rules (total = credits - debits posted; available = total - pending debits -
locked), exactly as ``GET /v1/balances`` shows them; then formatted for the user's language
from the exact minor units. ``/app/balances`` is the same list alone, for HTMX's refresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from strongroom.api import AssetsDep, SessionDep
from strongroom.db import utcnow
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import Unlock
from strongroom.money import AssetRegistry
from strongroom.web import core
from strongroom.web.i18n import Lang, lang_of
from strongroom.web.lite.layout import HOME, PREFIX, page
from strongroom.web.lite.limits import tier_name
from strongroom.web.sessions import SignedInDep

router = APIRouter(prefix=PREFIX)


@dataclass(frozen=True, slots=True)
class UnlockView:
    """A lot locked after a purchase (T+N, R-TN-3): how much, when it unlocks (the time for
    the page and ISO for the countdown ``app.js`` keeps running), and the hours and minutes
    left when the page was made."""

    amount: str
    at: str
    at_iso: str
    hours: int
    minutes: int


@dataclass(frozen=True, slots=True)
class BalanceView:
    asset: str
    total: str
    available: str
    all_available: bool
    locked: str | None
    unlocks: tuple[UnlockView, ...] = ()


def balances(
    *, session: Session, user: User, registry: AssetRegistry, lang: Lang
) -> list[BalanceView]:
    """One row per wallet the user has, by asset code, formatted for ``lang``: the ledger's
    ``Balance``, exactly as ``GET /v1/balances`` shows it."""
    views = []
    now = utcnow()
    for held in ledger.wallet_balances(session=session, user_id=user.id, now=now):
        scale = registry.get(held.asset).scale
        views.append(
            BalanceView(
                asset=held.asset,
                total=lang.amount(held.total_minor, scale),
                available=lang.amount(held.available_minor, scale),
                all_available=held.available_minor == held.total_minor,
                locked=lang.amount(held.locked_minor, scale) if held.locked_minor else None,
                unlocks=tuple(_unlock(lang, lot, scale, now) for lot in held.unlocks),
            )
        )
    return views


def _unlock(lang: Lang, lot: Unlock, scale: int, now: datetime) -> UnlockView:
    left_minutes = max(math.ceil((lot.at - now).total_seconds() / 60), 0)
    return UnlockView(
        amount=lang.amount(lot.amount_minor, scale),
        at=lang.when(lot.at),
        at_iso=lot.at.isoformat(),
        hours=left_minutes // 60,
        minutes=left_minutes % 60,
    )


@router.get("", include_in_schema=False)
def app_root() -> Response:
    """``/app`` → ``/app/``: the PWA's scope is ``/app/``, so its start page is inside it."""
    return core.secure_headers(RedirectResponse(HOME, status_code=308))


@router.get("/", response_class=HTMLResponse)
def home(
    user: SignedInDep, request: Request, session: SessionDep, registry: AssetsDep
) -> HTMLResponse:
    lang = lang_of(request)
    rows = balances(session=session, user=user.user, registry=registry, lang=lang)
    tier = tier_name(lang, user.user.kyc_tier)
    return page(
        request, "lite/home.html", {"balances": rows, "tier": tier}, user=user, current=HOME
    )


@router.get("/balances", response_class=HTMLResponse)
def balances_fragment(
    user: SignedInDep, request: Request, session: SessionDep, registry: AssetsDep
) -> HTMLResponse:
    """The balance list alone (``hx-get`` from the home screen's refresh button)."""
    rows = balances(session=session, user=user.user, registry=registry, lang=lang_of(request))
    return core.render(request, "lite/_balances.html", {"balances": rows})
