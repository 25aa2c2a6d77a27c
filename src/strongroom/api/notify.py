"""The operators' view of the email outbox (R-MAIL-1): admins and support read it, admins retry
a failed email. Bodies are never shown: a reset email holds a token that would let its reader
take the account over."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from strongroom.api import RowIdPath, SessionDep, SettingsDep, operator_with
from strongroom.identity.models import User
from strongroom.notify import outbox
from strongroom.notify.models import OutboxEmail

router = APIRouter(prefix="/v1/admin", tags=["operator"])
ReaderDep = Annotated[User, operator_with("outbox")]
RetryDep = Annotated[User, operator_with("outbox.retry")]


class OutboxEmailOut(BaseModel):
    id: int
    template_id: str
    user_id: str | None
    to: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class OutboxPageOut(BaseModel):
    items: list[OutboxEmailOut]
    next_cursor: str | None


def _out(row: OutboxEmail) -> OutboxEmailOut:
    return OutboxEmailOut(
        id=row.id,
        template_id=row.template_id,
        user_id=row.user_id,
        to=row.to_address,
        subject=row.subject,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.available_at if row.status == outbox.PENDING else None,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


@router.get("/outbox", responses={422: {"description": "`invalid_status`, `invalid_cursor`"}})
def list_outbox(
    operator: ReaderDep,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    template_id: Annotated[str | None, Query(max_length=64)] = None,
    to: Annotated[str | None, Query(max_length=254)] = None,
    user_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> OutboxPageOut:
    """Emails newest first, filtered by status, template, recipient or user."""
    size = min(limit or settings.mail.page_size_default, settings.mail.page_size_max)
    page = outbox.search(
        session=session,
        limit=size,
        cursor=cursor,
        status=status,
        template_id=template_id,
        to_address=to,
        user_id=user_id,
    )
    return OutboxPageOut(items=[_out(row) for row in page.items], next_cursor=page.next_cursor)


@router.post(
    "/outbox/{email_id}/retry",
    responses={
        404: {"description": "`email_not_found`"},
        409: {"description": "`email_not_failed`: only a failed email is retried"},
    },
)
def retry_email(email_id: RowIdPath, operator: RetryDep, session: SessionDep) -> OutboxEmailOut:
    """Give a failed email a fresh set of delivery attempts."""
    row = outbox.requeue(session=session, email_id=email_id)
    return _out(row)
