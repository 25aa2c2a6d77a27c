"""Login lockout (R-SEC-2): 5 wrong passwords lock sign-in for 2 hours, 5 more for 24 hours.

Attempts are counted per email string, not per user row, so an email without an account is
locked the same way and the answer never tells whether the account exists. The row is locked
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer) while the password is checked, so parallel
guesses cannot get past the limit. Failures older than the long lock are forgotten.

The sign-in service counts a failure in a kept step (``db.keep``): the count stays when the
sign-in is refused, and the step decides again under the lock when the unit of work re-runs it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from strongroom.db import insert_for
from strongroom.errors import present
from strongroom.identity.errors import AccountLocked
from strongroom.identity.models import LoginThrottle
from strongroom.settings import AuthSettings

EMAIL_KEY_MAX_CHARS = 254


def email_key(email: str) -> str:
    return email.strip().lower()[:EMAIL_KEY_MAX_CHARS]


def acquire(
    *, session: Session, email: str, now: datetime, settings: AuthSettings
) -> LoginThrottle:
    """The throttle row of this email, created if missing and locked for this transaction."""
    key = email_key(email)
    insert = insert_for(session)
    session.execute(
        insert(LoginThrottle)
        .values(email=key, failures=0, locks=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
    )
    throttle = present(
        session.get(LoginThrottle, key, with_for_update=True, populate_existing=True),
        "the throttle row was just written",
    )
    _forget_stale(throttle, now, settings)
    return throttle


def _forget_stale(throttle: LoginThrottle, now: datetime, settings: AuthSettings) -> None:
    still_locked = throttle.locked_until is not None and throttle.locked_until > now
    if not still_locked and now - throttle.updated_at > timedelta(
        seconds=settings.lockout_repeat_s
    ):
        throttle.failures, throttle.locks, throttle.locked_until = 0, 0, None


def refuse_if_locked(throttle: LoginThrottle, now: datetime) -> None:
    if throttle.locked_until is not None and throttle.locked_until > now:
        raise AccountLocked(throttle.locked_until)


def record_failure(
    throttle: LoginThrottle, *, now: datetime, settings: AuthSettings
) -> datetime | None:
    """Count one wrong password; the end of the lock if this one locked the email."""
    throttle.failures += 1
    throttle.updated_at = now
    if throttle.failures < settings.lockout_threshold:
        return None
    hold_s = settings.lockout_first_s if throttle.locks == 0 else settings.lockout_repeat_s
    throttle.locks += 1
    throttle.failures = 0
    throttle.locked_until = now + timedelta(seconds=hold_s)
    return throttle.locked_until


def unlock(*, session: Session, email: str) -> None:
    """Forget an email's failures and lock, if it has any (after a password reset or a
    sign-in): one statement, which also drops the row from the session if it is loaded."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.email == email_key(email)))
