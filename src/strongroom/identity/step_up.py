"""Step-up (R-SEC-8): a sensitive change asks for the password again, and the 2FA code when 2FA
is on, even inside a valid session; a bearer token alone changes no security setting.

Wrong passwords at a step-up count toward this session's own counter (``StepUpFailures``), not
the sign-in lockout of the email (R-SEC-2): a stolen token must not let its thief lock the owner
out of signing in (issue #10, finding 7). At ``auth.step_up_failures_max`` wrong passwords in a
row the session itself is signed out (a thief's token dies; the owner signs in again, since
sign-in was never locked), the owner is emailed and each step is audited. The count is a kept
step (``db.keep``) that decides under the session's row lock, as sign-in's does; a passed step
forgets the count in the unit of work. A wrong 2FA code counts toward the same 2FA block as at
sign-in (``two_factor.verify``): it can only be tried by someone who knew the password.

``identity.service.step_up`` runs the whole step and returns a ``StepUp``, which every change
that needs it takes as its proof (password, 2FA, anti-phishing code, email, and later the
withdrawal destinations).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from sqlalchemy import delete
from sqlalchemy.orm import Session

from strongroom.db import insert_for
from strongroom.errors import Forbidden, Unauthorized, invariant, present
from strongroom.identity import audit, passwords
from strongroom.identity.audit import Origin
from strongroom.identity.models import AuthToken, StepUpFailures, User
from strongroom.notify import outbox
from strongroom.settings import AuthSettings


@dataclass(frozen=True, slots=True)
class StepUp:
    """A step-up passed by ``user_id`` in session ``session_id`` at ``at``."""

    user_id: str
    session_id: str
    at: datetime

    def require(self, user: User) -> None:
        """The proof belongs to ``user`` (a bug otherwise, not a refusal)."""
        invariant(self.user_id == user.id, "a step-up proves one user's identity")


class ReauthenticationRequired(Forbidden):
    code = "reauthentication_required"

    def __init__(self) -> None:
        super().__init__(
            "this change needs your password again (and your two-factor code when it is on): "
            "send password (and otp)"
        )


class SessionSignedOut(Unauthorized):
    code = "session_revoked"


def password_check(
    user_id: str,
    session_id: str,
    password: str,
    settings: AuthSettings,
    origin: Origin,
    now: datetime,
) -> Callable[[Session], None]:
    """The kept step: lock the session, refuse it if it was signed out meanwhile, check the
    password and count a wrong one (``_wrong_password``). Argon2 runs once per stored hash."""
    matches = passwords.verifier(password)

    def check(kept: Session) -> None:
        token = kept.get(AuthToken, session_id, with_for_update=True, populate_existing=True)
        if token is None or token.user_id != user_id or token.revoked_at is not None:
            raise Unauthorized("this session was signed out", code="invalid_token")
        user = kept.get_one(User, user_id)
        if not matches(user.password_hash):
            _wrong_password(kept, user, token, settings, origin, now)

    return check


def _failures(session: Session, session_id: str, now: datetime) -> StepUpFailures:
    insert = insert_for(session)
    session.execute(
        insert(StepUpFailures)
        .values(session_id=session_id, failures=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["session_id"])
    )
    return present(
        session.get(StepUpFailures, session_id, with_for_update=True, populate_existing=True),
        "the step-up row was just written",
    )


def _wrong_password(
    session: Session,
    user: User,
    token: AuthToken,
    settings: AuthSettings,
    origin: Origin,
    now: datetime,
) -> NoReturn:
    """Count it; at the limit sign the session out and email the owner. Always raises."""
    row = _failures(session, token.id, now)
    row.failures += 1
    row.updated_at = now
    signed_out = row.failures >= settings.step_up_failures_max
    audit.record(
        session=session,
        action="step_up.failed",
        subject_user_id=user.id,
        origin=origin,
        now=now,
        details={"session_id": token.id, "failures_in_a_row": row.failures},
    )
    if signed_out:
        token.revoked_at = now
        audit.record(
            session=session,
            action="step_up.session_signed_out",
            subject_user_id=user.id,
            origin=origin,
            now=now,
            details={"session_id": token.id, "failures_in_a_row": row.failures},
        )
        outbox.send_to_user(
            session=session,
            user=user,
            template_id="security.step_up_signed_out",
            context={"failures": row.failures, "at": now, "ip": origin.ip},
            now=now,
        )
    session.flush()
    if signed_out:
        raise SessionSignedOut(
            "too many wrong passwords: this session was signed out; sign in again",
            failures=row.failures,
        )
    raise Unauthorized(
        "the password is wrong",
        code="invalid_credentials",
        attempts_left=settings.step_up_failures_max - row.failures,
    )


def forget_failures(*, session: Session, session_id: str) -> None:
    """A passed step-up: the session's wrong passwords in a row are forgotten (in the unit of
    work, so only if the request goes through)."""
    session.execute(delete(StepUpFailures).where(StepUpFailures.session_id == session_id))
