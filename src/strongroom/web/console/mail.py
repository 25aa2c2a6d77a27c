"""The email outbox (R-MAIL-1) and, in the demo, the inbox of what was delivered.

The outbox screen lists the rows of ``notify.outbox.search`` (newest first, a page at a time,
filtered by status or by user): status, template id, recipient, attempts, the next attempt and
the last error. Never a body, as in the operator API: a reset email holds a token that would let
its reader take the account over. The inbox (``inbox.py``) exists only in the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from strongroom.api import SessionDep
from strongroom.errors import NotFound
from strongroom.notify import outbox
from strongroom.notify.models import STATUSES, OutboxEmail
from strongroom.web.console import inbox
from strongroom.web.console.access import ConsoleGuard, Operator
from strongroom.web.console.layout import PREFIX, page
from strongroom.web.i18n import N_, Lang, lang_of

router = APIRouter(prefix=PREFIX)
OUTBOX: Final = "/console/outbox"
INBOX: Final = "/console/inbox"
PAGE_SIZE: Final = 50
STATUS_NAMES: Final = {
    outbox.PENDING: N_("Pending"),
    outbox.SENT: N_("Sent"),
    outbox.FAILED: N_("Failed"),
}


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    status: str
    status_name: str
    template_id: str
    to: str
    user_id: str
    subject: str
    attempts: int
    created: str
    next_attempt: str
    sent: str
    last_error: str


@router.get("/outbox", response_class=HTMLResponse)
def outbox_page(
    operator: Annotated[Operator, Depends(ConsoleGuard("outbox"))],
    request: Request,
    session: SessionDep,
    status: Annotated[str, Query(max_length=16)] = "",
    user: Annotated[str, Query(max_length=32)] = "",
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    lang = lang_of(request)
    found = outbox.search(
        session=session,
        limit=PAGE_SIZE,
        cursor=cursor or None,
        status=status if status in STATUSES else None,
        user_id=user.strip() or None,
    )
    values = {
        "rows": [_row(email, lang) for email in found.items],
        "next_cursor": found.next_cursor,
        "cursor": cursor,
        "status": status if status in STATUSES else "",
        "user": user.strip(),
        "statuses": [(code, STATUS_NAMES[code]) for code in STATUSES],
        "may_users": operator.may("users"),
    }
    return page(request, "console/outbox.html", values, operator=operator, current=OUTBOX)


def _row(email: OutboxEmail, lang: Lang) -> OutboxRow:
    waiting = email.status == outbox.PENDING
    return OutboxRow(
        id=email.id,
        status=email.status,
        status_name=STATUS_NAMES.get(email.status, email.status),
        template_id=email.template_id,
        to=email.to_address,
        user_id=email.user_id or "",
        subject=email.subject,
        attempts=email.attempts,
        created=lang.when(email.created_at),
        next_attempt=lang.when(email.available_at) if waiting else "",
        sent=lang.when(email.sent_at) if email.sent_at is not None else "",
        last_error=email.last_error or "",
    )


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(
    operator: Annotated[Operator, Depends(ConsoleGuard("inbox"))],
    request: Request,
    page_number: Annotated[int, Query(alias="page", ge=1, le=inbox.PAGES_MAX)] = 1,
) -> HTMLResponse:
    """What the demo's SMTP sink received (demo only: elsewhere there is no such page)."""
    maildir = inbox.directory(request)
    if maildir is None:
        raise NotFound("the inbox exists only in the demo", code="not_found")
    found = inbox.read(maildir, page=page_number)
    lang = lang_of(request)
    values = {
        "inbox": found,
        "dates": [lang.when(item.sent_at) if item.sent_at else "" for item in found.items],
    }
    return page(request, "console/inbox.html", values, operator=operator, current=INBOX)
