"""The audit log (R-SEC-7): users' security events and every operator action.

Rows are only ever inserted; the database refuses UPDATE and DELETE on ``audit_events`` (a
trigger on PostgreSQL and on SQLite). Events are written in the caller's transaction, except
operator calls, which ``api.OperatorGuard`` commits before the endpoint runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from strongroom import paging as cursors
from strongroom.db import utcnow
from strongroom.errors import invariant
from strongroom.identity.models import AuditEvent, User

SECURITY = "security"
OPERATOR = "operator"
CURSOR = "audit"
DETAILS_MAX_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from."""

    ip: str | None = None
    user_agent: str | None = None


NOWHERE = Origin()


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditEvent]
    next_cursor: str | None


def record(
    *,
    session: Session,
    action: str,
    category: str = SECURITY,
    subject_user_id: str | None = None,
    actor: User | None = None,
    origin: Origin = NOWHERE,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    invariant(category in (SECURITY, OPERATOR), f"unknown audit category {category}")
    invariant(0 < len(action) <= 80, "an audit action is 1-80 characters")
    details_json = json.dumps(dict(details or {}), sort_keys=True, default=str)
    invariant(len(details_json) <= DETAILS_MAX_CHARS, "audit details are too large")
    event = AuditEvent(
        occurred_at=now or utcnow(),
        category=category,
        action=action,
        actor_id=actor.id if actor else None,
        actor_role=actor.operator_role if actor else None,
        subject_user_id=subject_user_id,
        ip=(origin.ip or "")[:64] or None,
        user_agent=(origin.user_agent or "")[:300] or None,
        details_json=details_json,
    )
    session.add(event)
    return event


def details(event: AuditEvent) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(event.details_json or "{}")
    return loaded


def search(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    subject_user_id: str | None = None,
    category: str | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """Newest first. ``actor`` is a user id or an email; ``action`` matches exactly or as a
    dotted prefix (``login`` finds ``login.failed``); ``since`` (included) and ``until``
    (excluded) bound the time."""
    invariant(1 <= limit <= 1000, "page size out of bounds")
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(AuditEvent.id < cursors.decode(CURSOR, cursor))
    if actor is not None:
        query = query.where(AuditEvent.actor_id == _actor_id(session, actor))
    if action is not None:
        query = query.where(
            or_(
                AuditEvent.action == action,
                AuditEvent.action.startswith(action + ".", autoescape=True),
            )
        )
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AuditEvent.occurred_at < until)
    if subject_user_id is not None:
        query = query.where(AuditEvent.subject_user_id == subject_user_id)
    if category is not None:
        query = query.where(AuditEvent.category == category)
    rows = list(session.scalars(query))
    items = rows[:limit]
    more = len(rows) > limit
    return AuditPage(
        items=items, next_cursor=cursors.encode(CURSOR, items[-1].id) if more else None
    )


def security_events(
    *, session: Session, user_id: str, limit: int, cursor: str | None = None
) -> AuditPage:
    """A user's own security events (never other users', never operators' notes)."""
    return search(
        session=session, limit=limit, cursor=cursor, subject_user_id=user_id, category=SECURITY
    )


def _actor_id(session: Session, actor: str) -> str:
    if "@" not in actor:
        return actor
    found = session.scalars(select(User.id).where(User.email == actor.strip().lower())).first()
    return found or "-"
