"""Who may use which console screen, and the guard every console page goes through (R-SEC-7,
R-SEC-10).

The permissions are the operator roles' one table, ``identity.roles.TABLE`` (capability →
roles), which the operator API reads too: a console screen, or a part of one, is a capability
there (``dashboard``, ``users``, ``balances``, ``security_events``, ``audit``, ``outbox``,
``inbox``, ``adjustments``...). ``ACCESS`` is that table, under the name the console has always
used. The navigation shows only what the role may use, and the guard answers 403 (a page in
the console's layout) for everything else; the table and the reasons for it are in
``identity/roles.py``.

``ConsoleGuard(screen)`` is the dependency of every console page: the browser's session must be
an operator's with 2FA on (``identity.service.require_operator``); the request is written to the
audit log with ``api.audit_operator_request`` and committed before anything else
happens, as ``api.OperatorGuard`` does for the operator API (a refusal by role is recorded
too: it is an operator's attempt); then the role must be allowed ``screen``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastapi import Request

from strongroom.api import SessionDep, audit_operator_request
from strongroom.errors import Forbidden, invariant
from strongroom.identity import roles
from strongroom.identity import service as identity
from strongroom.identity.models import AuthToken, User
from strongroom.web import sessions

ACCESS: Final = roles.TABLE
"""Screen (capability) → the operator roles that may use it: the one role table."""


def allowed(role: str | None, screen: str) -> bool:
    """Whether an operator of ``role`` may use ``screen`` (a key of ``ACCESS``)."""
    return roles.may(role, screen)


class NotAnOperator(Forbidden):
    """A signed-in user without an operator role opened a console page."""

    code = "console_operators_only"

    def __init__(self) -> None:
        super().__init__("the console is for operators")


class ScreenForbidden(Forbidden):
    """The operator's role may not use this screen."""

    code = "console_screen_forbidden"

    def __init__(self, screen: str) -> None:
        super().__init__("your operator role may not use this screen", screen=screen)


@dataclass(frozen=True, slots=True)
class Operator:
    """The operator behind a console request, and their browser session. ``role`` and
    ``email`` are copied when the guard lets them in: an error page may be drawn after the
    request's database session has closed."""

    user: User
    session: AuthToken
    role: str
    email: str

    def may(self, screen: str) -> bool:
        return allowed(self.role, screen)


STATE_KEY: Final = "console_operator"
"""Where the guard leaves the operator on ``request.state`` (for the error pages' layout)."""


def operator_of(request: Request) -> Operator | None:
    """The operator a guard has let in on this request, if any."""
    found = getattr(request.state, STATE_KEY, None)
    return found if isinstance(found, Operator) else None


class ConsoleGuard:
    """The dependency of a console page for ``screen`` (see the module docstring)."""

    def __init__(self, screen: str) -> None:
        invariant(screen in ACCESS, f"unknown console screen {screen!r}")
        self.screen = screen

    def __call__(self, request: Request, session: SessionDep) -> Operator:
        signed_in = sessions.signed_in(request, session)  # none: to the console's sign-in
        user = signed_in.user
        if user.operator_role is None:
            raise NotAnOperator()
        identity.require_operator(user)  # 2FA on, or ``two_factor_required``
        operator = Operator(
            user=user, session=signed_in.session, role=user.operator_role, email=user.email
        )
        setattr(request.state, STATE_KEY, operator)
        audit_operator_request(request, session, user)
        if not operator.may(self.screen):
            raise ScreenForbidden(self.screen)
        return operator
