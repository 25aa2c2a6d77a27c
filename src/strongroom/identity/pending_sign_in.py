"""Pending sign-ins: a right password waiting for its 2FA code (issue #10, finding 5).

The web's sign-in takes the password and the code on two forms. Between them the server keeps
a ``PendingSignIn`` row: the user, which sign-in it belongs to (the console's, operators only,
or the Lite app's), when it expires (``auth.sign_in_pending_ttl_s``, 3 minutes by default) and
when it was used; the browser holds a random nonce whose SHA-256 names the row. The password
is not held anywhere in between, and the nonce completes one sign-in at most: ``consume`` takes
the row under its lock and marks it used in the sign-in's unit of work, so a replay after a
completed sign-in, an expired nonce or a nonce of the other sign-in finds nothing
(``sign_in_expired``). A wrong code rolls the use back with the rest of its unit of work, so
the person may try another code until the row expires (2FA's blocks and alerts still apply).

Rows a user no longer needs (used or expired) are deleted when that user's next pending
sign-in is opened; the rate limits on the password step (R-SEC-9) bound how many can be open.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import Session

from strongroom.errors import Unauthorized
from strongroom.identity.models import PendingSignIn, User

NONCE_BYTES: Final = 32
NONCE_MAX_CHARS: Final = 64


class SignInExpired(Unauthorized):
    """The pending sign-in is unknown, used, expired or of the other sign-in: start again."""

    code = "sign_in_expired"

    def __init__(self) -> None:
        super().__init__("this sign-in has expired or was used: enter your password again")


@dataclass(frozen=True, slots=True)
class Opened:
    """A new pending sign-in: the nonce for the browser (shown once) and when it expires."""

    nonce: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Waiting:
    """A pending sign-in that can still be completed: whose, and until when."""

    user_id: str
    email: str
    expires_at: datetime


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def open_sign_in(
    *, session: Session, user_id: str, operators_only: bool, ttl_s: int, now: datetime
) -> Opened:
    """Keep a right password's wait for its code, after deleting the user's used or expired
    pending sign-ins."""
    session.execute(
        delete(PendingSignIn).where(
            PendingSignIn.user_id == user_id,
            or_(PendingSignIn.consumed_at.is_not(None), PendingSignIn.expires_at <= now),
        )
    )
    nonce = secrets.token_urlsafe(NONCE_BYTES)
    row = PendingSignIn(
        id="ps_" + secrets.token_hex(8),
        user_id=user_id,
        nonce_hash=_digest(nonce),
        operators_only=operators_only,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    session.flush()
    return Opened(nonce=nonce, expires_at=row.expires_at)


def _usable(operators_only: bool, now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        PendingSignIn.consumed_at.is_(None),
        PendingSignIn.expires_at > now,
        PendingSignIn.operators_only == operators_only,
    )


def find(*, session: Session, nonce: str, operators_only: bool, now: datetime) -> Waiting | None:
    """The pending sign-in ``nonce`` names, if it can still be completed (reads only)."""
    if not 0 < len(nonce) <= NONCE_MAX_CHARS:
        return None
    found = session.execute(
        select(PendingSignIn, User.email)
        .join(User, User.id == PendingSignIn.user_id)
        .where(PendingSignIn.nonce_hash == _digest(nonce), *_usable(operators_only, now))
    ).first()
    if found is None:
        return None
    row, email = found
    return Waiting(user_id=row.user_id, email=email, expires_at=row.expires_at)


def consume(*, session: Session, nonce: str, operators_only: bool, now: datetime) -> str:
    """Use the pending sign-in up (in the caller's unit of work): its user's id, or
    ``SignInExpired``. Taken under its row lock, so two requests with one nonce cannot both
    complete: the second finds it used once the first commits."""
    if not 0 < len(nonce) <= NONCE_MAX_CHARS:
        raise SignInExpired()
    row = session.scalars(
        select(PendingSignIn)
        .where(PendingSignIn.nonce_hash == _digest(nonce))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if (
        row is None
        or row.consumed_at is not None
        or row.expires_at <= now
        or row.operators_only is not operators_only
    ):
        raise SignInExpired()
    row.consumed_at = now
    session.flush()
    return row.user_id
