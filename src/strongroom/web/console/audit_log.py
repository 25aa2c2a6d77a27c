"""The audit log (R-SEC-7): search by actor (an operator's id or email), action (exact, or a
dotted prefix: ``login`` finds ``login.failed``), category and a range of days, newest first,
a page at a time. Admins only (``access.ACCESS``).

The days are Hong Kong days, like every time the console shows (``i18n.DISPLAY_TIMEZONE``):
"from 1 Dec to 2 Dec" is from 1 Dec 00:00 to 3 Dec 00:00 in Hong Kong. A date that is not
``YYYY-MM-DD``, or a range that ends before it starts, is refused with a message and no search.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Final

from babel.dates import get_timezone
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from strongroom.api import SessionDep
from strongroom.identity import audit
from strongroom.identity.models import AuditEvent
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.console.users import event_details
from strongroom.web.i18n import DISPLAY_TIMEZONE, N_, Lang, lang_of

router = APIRouter(prefix=PREFIX)
AUDIT: Final = "/console/audit"
PAGE_SIZE: Final = 50
CATEGORIES: Final = (audit.SECURITY, audit.OPERATOR)
CATEGORY_NAMES: Final = {audit.SECURITY: N_("Security"), audit.OPERATOR: N_("Operator")}
BAD_DATE: Final = N_("Enter dates as YYYY-MM-DD.")
BAD_RANGE: Final = N_("The end of the range is before its start.")


@dataclass(frozen=True, slots=True)
class AuditRow:
    when: str
    category: str
    action: str
    actor_id: str
    actor_role: str
    subject_user_id: str
    ip: str
    details: str


@dataclass(frozen=True, slots=True)
class Filters:
    actor: str
    action: str
    category: str
    date_from: str
    date_to: str


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in the console's time zone."""
    return datetime.combine(day, time(0), tzinfo=get_timezone(DISPLAY_TIMEZONE))


def _parse_day(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


@router.get("/audit", response_class=HTMLResponse)
def audit_search(
    operator: Annotated[Operator, Depends(ConsoleGuard("audit"))],
    request: Request,
    session: SessionDep,
    actor: Annotated[str, Query(max_length=254)] = "",
    action: Annotated[str, Query(max_length=80)] = "",
    category: Annotated[str, Query(max_length=16)] = "",
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    lang = lang_of(request)
    filters = Filters(actor.strip(), action.strip(), category, date_from, date_to)
    values = {
        "filters": filters,
        "categories": [(code, CATEGORY_NAMES[code]) for code in CATEGORIES],
        "rows": [],
        "next_cursor": None,
        "cursor": cursor,
        "error": None,
        "may_users": operator.may("users"),
    }
    try:
        first, last = _parse_day(date_from), _parse_day(date_to)
    except ValueError:
        values["error"] = lang.gettext(BAD_DATE)
        return _page(request, values, operator, 422)
    if first is not None and last is not None and last < first:
        values["error"] = lang.gettext(BAD_RANGE)
        return _page(request, values, operator, 422)
    found = audit.search(
        session=session,
        limit=PAGE_SIZE,
        cursor=cursor or None,
        actor=filters.actor or None,
        action=filters.action or None,
        category=category if category in CATEGORIES else None,
        since=day_start(first) if first is not None else None,
        until=day_start(last + timedelta(days=1)) if last is not None else None,
    )
    values["rows"] = [_row(event, lang) for event in found.items]
    values["next_cursor"] = found.next_cursor
    return _page(request, values, operator, 200)


def _page(
    request: Request, values: dict[str, object], operator: Operator, status_code: int
) -> HTMLResponse:
    return page(
        request,
        "console/audit.html",
        values,
        operator=operator,
        current=AUDIT,
        status_code=status_code,
    )


def _row(event: AuditEvent, lang: Lang) -> AuditRow:
    return AuditRow(
        when=lang.when(event.occurred_at),
        category=CATEGORY_NAMES.get(event.category, event.category),
        action=event.action,
        actor_id=event.actor_id or "",
        actor_role=event.actor_role or "",
        subject_user_id=event.subject_user_id or "",
        ip=event.ip or "",
        details=event_details(event),
    )
