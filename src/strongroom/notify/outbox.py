"""Write emails to the outbox in the caller's transaction (R-MAIL-1), and read it back.

Nothing here talks to SMTP: an email exists only once the transaction that wrote it commits, and
the delivery worker (``delivery.py``) sends what is committed. A rolled-back event sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from strongroom import paging
from strongroom.db import DriverStatement, driver_rows, pg_array, utcnow
from strongroom.errors import Conflict, NotFound, ValidationFailed, invariant
from strongroom.notify import render, templates
from strongroom.notify.models import FAILED, PENDING, SENT, STATUSES, OutboxEmail

CURSOR = "outbox"
SCRUBBED = "[removed after delivery: this email held a one-time secret]"


class Recipient(Protocol):
    """Whom ``send_to_user`` writes to: what it reads of a user (``identity.models.User`` is
    one). A protocol, so that notify needs nothing of identity (identity imports notify)."""

    @property
    def id(self) -> str: ...

    @property
    def email(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def anti_phishing_code(self) -> str | None: ...


def enqueue(
    *,
    session: Session,
    template_id: str,
    to_address: str,
    context: Mapping[str, object],
    anti_phishing_code: str | None,
    user_id: str | None = None,
    now: datetime | None = None,
) -> OutboxEmail:
    """Render one email now and add it to the outbox; sent after the transaction commits."""
    invariant("@" in to_address and len(to_address) <= 254, "an email needs an address")
    now = now or utcnow()
    email = render.render(template_id, context, anti_phishing_code=anti_phishing_code)
    row = OutboxEmail(
        template_id=template_id,
        user_id=user_id,
        to_address=to_address,
        subject=email.subject,
        body_text=email.text,
        body_html=email.html,
        sensitive=templates.get(template_id).sensitive,
        status=PENDING,
        attempts=0,
        available_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def send_to_user(
    *,
    session: Session,
    user: Recipient,
    template_id: str,
    context: Mapping[str, object] | None = None,
    to_address: str | None = None,
    now: datetime | None = None,
) -> OutboxEmail:
    """An email to a user, with their anti-phishing code (R-APC-2) and ``name`` in the context."""
    full_context: dict[str, object] = {"name": user.name, **(context or {})}
    return enqueue(
        session=session,
        template_id=template_id,
        to_address=to_address or user.email,
        context=full_context,
        anti_phishing_code=user.anti_phishing_code,
        user_id=user.id,
        now=now,
    )


@dataclass(frozen=True, slots=True)
class PreparedEmail:
    """An email rendered ahead of the event that sends it (``prepare_to_user``), for a writer
    that must stay cheap, e.g. the ledger's group commit (``add_prepared``). ``placeholder``
    stands for a value known only then (a transfer's id): it is plain letters and digits, so
    rendering and HTML escaping leave it as it is."""

    template_id: str
    user_id: str | None
    to_address: str
    subject: str
    body_text: str
    body_html: str
    sensitive: bool
    context: str | None = None
    """Set (``defer_to_user``): the bodies are rendered from it when the email is sent."""


def prepare_to_user(
    *, user: Recipient, template_id: str, context: Mapping[str, object]
) -> PreparedEmail:
    """``send_to_user``'s email, rendered now and written later (``add_prepared``)."""
    full_context: dict[str, object] = {"name": user.name, **context}
    email = render.render(template_id, full_context, anti_phishing_code=user.anti_phishing_code)
    return PreparedEmail(
        template_id=template_id,
        user_id=user.id,
        to_address=user.email,
        subject=email.subject,
        body_text=email.text,
        body_html=email.html,
        sensitive=templates.get(template_id).sensitive,
    )


def defer_to_user(
    *, user: Recipient, template_id: str, context: Mapping[str, object]
) -> PreparedEmail:
    """``prepare_to_user``'s email with only its subject rendered now: the bodies are rendered
    from the stored context when the delivery worker sends it (``content``). For a writer that
    must stay cheap and writes many (the group commit: two receipts per transfer, issue #14);
    not for an email that carries a secret (its bodies are scrubbed once sent)."""
    template = templates.get(template_id)
    invariant(not template.sensitive, "a sensitive email is rendered when it is written")
    full_context: dict[str, object] = {"name": user.name, **context}
    return PreparedEmail(
        template_id=template_id,
        user_id=user.id,
        to_address=user.email,
        subject=render.subject(template_id, full_context),
        body_text="",
        body_html="",
        sensitive=False,
        context=render.stored_context(full_context, anti_phishing_code=user.anti_phishing_code),
    )


def content(email: OutboxEmail) -> render.RenderedEmail:
    """What the email says: its stored bodies, or those rendered from its stored context (the
    same email as rendering it when it was written)."""
    if email.context is None:
        return render.RenderedEmail(
            template_id=email.template_id,
            subject=email.subject,
            text=email.body_text,
            html=email.body_html,
        )
    return render.render_stored(email.template_id, email.context)


def add_prepared(
    *,
    session: Session,
    email: PreparedEmail,
    replace: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> OutboxEmail:
    """Add a prepared email to the outbox, each ``replace`` key (a placeholder) swapped for
    its value; not flushed (the caller's next flush or commit writes it)."""
    row = OutboxEmail(**prepared_row(email, replace=replace, now=now or utcnow()))
    session.add(row)
    return row


def prepared_row(
    email: PreparedEmail, *, replace: Mapping[str, str] | None = None, now: datetime
) -> dict[str, object]:
    """``add_prepared``'s row as column values, for ``insert_rows``: many emails of one
    transaction written in one statement (the ledger's group commit writes two receipts per
    transfer)."""
    subject, text, html, context = email.subject, email.body_text, email.body_html, email.context
    for placeholder, value in (replace or {}).items():
        subject = subject.replace(placeholder, value)
        text = text.replace(placeholder, value)
        html = html.replace(placeholder, value)
        if context is not None:  # JSON: the placeholder and an id are letters, digits, "-"
            context = context.replace(placeholder, value)
    return {
        "template_id": email.template_id,
        "user_id": email.user_id,
        "to_address": email.to_address,
        "subject": subject,
        "body_text": text,
        "body_html": html,
        "context": context,
        "sensitive": email.sensitive,
        "status": PENDING,
        "attempts": 0,
        "available_at": now,
        "created_at": now,
    }


_ROW_TYPES = {
    "template_id": "text",
    "user_id": "text",
    "to_address": "text",
    "subject": "text",
    "body_text": "text",
    "body_html": "text",
    "context": "text",
    "sensitive": "boolean",
    "status": "text",
    "attempts": "integer",
    "available_at": "timestamptz",
    "created_at": "timestamptz",
}
"""``prepared_row``'s columns, with the type of their array in ``_INSERT_POSTGRESQL``."""
_ARRAYS = ", ".join(f"CAST(:{column} AS {kind}[])" for column, kind in _ROW_TYPES.items())
_INSERT_POSTGRESQL = DriverStatement(
    f"INSERT INTO mail_outbox ({', '.join(_ROW_TYPES)}) SELECT * FROM unnest({_ARRAYS})"  # noqa: S608 (built from the constants above, no input)
    " RETURNING id"
)


def insert_rows(session: Session, rows: Sequence[Mapping[str, object]]) -> None:
    """Write ``prepared_row`` rows in the session's transaction, now: on PostgreSQL one
    statement of arrays (``insert_rows_returning_ids``), elsewhere one Core executemany."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(OutboxEmail), [dict(row) for row in rows])
        return
    insert_rows_returning_ids(session, rows)


def insert_rows_returning_ids(session: Session, rows: Sequence[Mapping[str, object]]) -> list[int]:
    """``insert_rows`` on PostgreSQL as ONE statement of arrays (``db.pg_array``), with each
    row's id in the order of ``rows``: for a writer that may have to take some of them back in
    the same transaction (``delete_rows``). The ids are drawn from the table's sequence as the
    rows are inserted, in the arrays' order, so the returned ids sorted are the rows' in order
    (a pipelined ``executemany`` of one INSERT per row cost the group commit about 0.1 ms of
    CPU per email, issue #14)."""
    if not rows:
        return []
    invariant(session.get_bind().dialect.name == "postgresql", "PostgreSQL only")
    params = {column: pg_array(row[column] for row in rows) for column in _ROW_TYPES}
    ids = sorted(int(row[0]) for row in driver_rows(session, _INSERT_POSTGRESQL, params))
    invariant(len(ids) == len(rows), "one id per row")
    return ids


def delete_rows(session: Session, ids: Sequence[int]) -> None:
    """Delete outbox rows written earlier in this transaction (never sent: nothing is sent
    before its transaction commits)."""
    if ids:
        session.execute(delete(OutboxEmail).where(OutboxEmail.id.in_(list(ids))))


@dataclass(frozen=True, slots=True)
class OutboxPage:
    items: list[OutboxEmail]
    next_cursor: str | None


def search(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    template_id: str | None = None,
    to_address: str | None = None,
    user_id: str | None = None,
) -> OutboxPage:
    """Newest first, cursor-paginated; the operator's outbox view."""
    invariant(1 <= limit <= 1000, "page size out of bounds")
    if status is not None and status not in STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(STATUSES)}", code="invalid_status"
        )
    query = select(OutboxEmail).order_by(OutboxEmail.id.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(OutboxEmail.id < paging.decode(CURSOR, cursor))
    for column, value in (
        (OutboxEmail.status, status),
        (OutboxEmail.template_id, template_id),
        (OutboxEmail.to_address, to_address),
        (OutboxEmail.user_id, user_id),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    items = rows[:limit]
    return OutboxPage(
        items=items, next_cursor=paging.encode(CURSOR, items[-1].id) if more else None
    )


def requeue(*, session: Session, email_id: int, now: datetime | None = None) -> OutboxEmail:
    """Give a failed email a fresh set of attempts, due now (an operator's retry)."""
    row = session.get(OutboxEmail, email_id, with_for_update=True)
    if row is None:
        raise NotFound("no such email", code="email_not_found")
    if row.status != FAILED:
        raise Conflict(
            f"only failed emails can be retried; this one is {row.status}",
            code="email_not_failed",
            status=row.status,
        )
    row.status, row.attempts, row.claim_token = PENDING, 0, None
    row.available_at = now or utcnow()
    session.flush()
    return row


__all__ = [
    "FAILED",
    "PENDING",
    "SENT",
    "OutboxPage",
    "PreparedEmail",
    "add_prepared",
    "content",
    "defer_to_user",
    "delete_rows",
    "enqueue",
    "insert_rows",
    "insert_rows_returning_ids",
    "prepare_to_user",
    "prepared_row",
    "requeue",
    "search",
    "send_to_user",
]
