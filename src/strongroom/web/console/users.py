"""Users: search by email (any part of it) or id, and a user's page with their balances per
asset and their security events, a page at a time (newest first).

What a user's page shows follows the role (``access.ACCESS``, the one role table): balances
for admin and finance (R-SEC-10); security events for admin, support and KYC reviewers. The
anti-phishing code itself is never shown, only whether one is set: it is the user's proof that
an email comes from us.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from strongroom.api import AssetsDep, SessionDep
from strongroom.db import utcnow
from strongroom.errors import NotFound
from strongroom.identity import audit, two_factor
from strongroom.identity.models import AuditEvent, User
from strongroom.ledger import service as ledger
from strongroom.money import AssetRegistry
from strongroom.web.console import queries
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import Lang, lang_of

router = APIRouter(prefix=PREFIX)
USERS: Final = "/console/users"
PAGE_SIZE: Final = 25
EVENTS_PAGE_SIZE: Final = 20
DETAILS_SHOWN_MAX_CHARS: Final = 300
UsersGuard = Annotated[Operator, Depends(ConsoleGuard("users"))]


@dataclass(frozen=True, slots=True)
class BalanceRow:
    asset: str
    total: str
    available: str
    pending: str
    locked: str


@dataclass(frozen=True, slots=True)
class EventRow:
    when: str
    action: str
    ip: str
    user_agent: str
    details: str


@router.get("/users", response_class=HTMLResponse)
def search(
    operator: UsersGuard,
    request: Request,
    session: SessionDep,
    q: Annotated[str, Query(max_length=queries.SEARCH_MAX_CHARS)] = "",
    after: Annotated[str | None, Query(max_length=254)] = None,
) -> HTMLResponse:
    found = queries.search_users(session=session, text=q, limit=PAGE_SIZE, after=after or None)
    values = {"q": q, "users": found.items, "next_after": found.next_after, "after": after}
    return page(request, "console/users.html", values, operator=operator, current=USERS)


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(
    user_id: str,
    operator: UsersGuard,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
    events: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    user = session.get(User, user_id) if len(user_id) <= 32 else None
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    lang = lang_of(request)
    values: dict[str, Any] = {
        "user": user,
        "two_factor": two_factor.is_enabled(user),
        "joined": lang.when(user.created_at),
        "frozen_until": _frozen_until(user, lang),
        "balances": _balances(session, user, registry, lang) if operator.may("balances") else None,
        "events": None,
        "next_events": None,
        "events_cursor": events,
        "may_outbox": operator.may("outbox"),
        "erased_at": lang.when(user.erased_at) if user.erased_at is not None else None,
        "purged_at": lang.when(user.purged_at) if user.purged_at is not None else None,
    }
    if operator.may("security_events"):
        found = audit.security_events(
            session=session, user_id=user.id, limit=EVENTS_PAGE_SIZE, cursor=events or None
        )
        values["events"] = [
            _event_row(event, lang, erased=user.erased_at is not None) for event in found.items
        ]
        values["next_events"] = found.next_cursor
    return page(request, "console/user.html", values, operator=operator, current=USERS)


def _frozen_until(user: User, lang: Lang) -> str | None:
    until = user.withdrawals_frozen_until
    return lang.when(until) if until is not None and until > utcnow() else None


def _balances(
    session: Session, user: User, registry: AssetRegistry, lang: Lang
) -> list[BalanceRow]:
    """Each wallet of the user: the ledger's ``Balance``, as ``GET /v1/balances`` shows it,
    formatted for ``lang``."""
    rows = []
    for held in ledger.wallet_balances(session=session, user_id=user.id):
        scale = registry.get(held.asset).scale
        rows.append(
            BalanceRow(
                asset=held.asset,
                total=lang.amount(held.total_minor, scale),
                available=lang.amount(held.available_minor, scale),
                pending=lang.amount(held.pending_minor, scale),
                locked=lang.amount(held.locked_minor, scale),
            )
        )
    return rows


def event_details(event: AuditEvent) -> str:
    """An event's details as ``key=value`` pairs, shortened for a table cell."""
    pairs = " ".join(f"{key}={value}" for key, value in sorted(audit.details(event).items()))
    return pairs if len(pairs) <= DETAILS_SHOWN_MAX_CHARS else pairs[:DETAILS_SHOWN_MAX_CHARS] + "…"


def _event_row(event: AuditEvent, lang: Lang, *, erased: bool = False) -> EventRow:
    """One event; an erased user's events show their action and time only: the audit log is
    append-only (R-SEC-7), so what an event recorded before the erasure (an email, an IP
    address) stays in it, but the console does not show it again (``privacy.service``)."""
    if erased:
        return EventRow(
            when=lang.when(event.occurred_at), action=event.action, ip="", user_agent="", details=""
        )
    return EventRow(
        when=lang.when(event.occurred_at),
        action=event.action,
        ip=event.ip or "",
        user_agent=event.user_agent or "",
        details=event_details(event),
    )
