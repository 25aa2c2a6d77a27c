"""What each throttled request counts against (R-SEC-9): the rules of ``settings.rate_limits``,
keyed by the client's address and by the account (the normalised email), counted by the app's
``ratelimit.service.RateLimiter`` before the request's work (before any Argon2 hash). A refusal
is 429 ``rate_limited`` with ``Retry-After`` and ``details`` {rule, retry_after_s}.

**The client's address** is ``request.client.host``: the peer of the connection, or, when the
peer is a proxy uvicorn trusts (its ``forwarded_allow_ips``: ``FORWARDED_ALLOW_IPS``, by default
``127.0.0.1`` and ``::1``), the rightmost address in ``X-Forwarded-For`` that is not such a proxy.
So a client cannot pick its own address with a header unless it connects from a trusted proxy.
IPv6 clients are counted per /64 network (one subscriber's usual allocation), since a single
host can use any address of its /64.

Sign-in and 2FA steps give their count back when they succeed (``give_back``): those rules count
wrong guesses and attempts still running, not honest sign-ins. Registrations and reset requests
always count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Final

from fastapi import Request
from sqlalchemy.orm import Session

from strongroom.identity import lockout
from strongroom.ratelimit.service import Check, Counted, RateLimiter

UNKNOWN_ADDRESS = "unknown"
IPV6_PREFIX_BITS = 64


def address(request: Request) -> str:
    """The client's address as rate limits count it (an IPv6 address: its /64)."""
    host = request.client.host if request.client else None
    if not host:
        return UNKNOWN_ADDRESS
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_PREFIX_BITS}", strict=False))
    return str(parsed)


def account(email: str) -> str:
    """The account as rate limits count it: the email as sign-in's lockout keys it."""
    return lockout.email_key(email)


def limiter(request: Request) -> RateLimiter:
    found: RateLimiter = request.app.state.rate_limiter
    return found


def hit(request: Request, session: Session, checks: Sequence[Check]) -> list[Counted]:
    """Count the request against ``checks`` in order; ``RateLimited`` at the first over."""
    return limiter(request).hit(checks, request_session=session)


def give_back(request: Request, session: Session, counted: Sequence[Counted]) -> None:
    """A sign-in or 2FA step that succeeded takes its count back."""
    limiter(request).give_back(counted, request_session=session)


def login(request: Request, session: Session, email: str, *, otp: bool = False) -> list[Counted]:
    """A sign-in attempt: per address, then per account; with ``otp`` (a code sent with the
    password) also a 2FA step, counted in the same round trip."""
    checks = [
        Check("login_per_address", address(request)),
        Check("login_per_account", account(email)),
    ]
    if otp:
        checks += _two_factor_checks(request, email)
    return hit(request, session, checks)


def registration(request: Request, session: Session) -> list[Counted]:
    return hit(request, session, [Check("registration_per_address", address(request))])


def password_reset(request: Request, session: Session, email: str | None) -> list[Counted]:
    """A reset asked for (per address, then per account) or confirmed (``email`` None: the
    token names the account, so per address only)."""
    checks = [Check("password_reset_per_address", address(request))]
    if email is not None:
        checks.append(Check("password_reset_per_account", account(email)))
    return hit(request, session, checks)


def two_factor(request: Request, session: Session, email: str) -> list[Counted]:
    """A 2FA code checked: per address, then per account."""
    return hit(request, session, _two_factor_checks(request, email))


def _two_factor_checks(request: Request, email: str) -> list[Check]:
    return [
        Check("two_factor_per_address", address(request)),
        Check("two_factor_per_account", account(email)),
    ]


def verification_resend(request: Request, session: Session, email: str) -> list[Counted]:
    """Another email-verification link asked for: per address, then per account."""
    return hit(
        request,
        session,
        [
            Check("verification_resend_per_address", address(request)),
            Check("verification_resend_per_account", account(email)),
        ],
    )


def webhook(request: Request, session: Session) -> list[Counted]:
    """A connector's notification (``POST /v1/webhooks/{connector}``): per address."""
    return hit(request, session, [Check("webhooks_per_address", address(request))])


def fx_quote(request: Request, session: Session, user_id: str) -> list[Counted]:
    """An FX quote asked for (each one is a row): per account."""
    return hit(request, session, [Check("fx_quotes_per_account", user_id)])


THROTTLED: Final[dict[int | str, dict[str, Any]]] = {
    429: {
        "description": "`rate_limited`: too many requests from this address or for this "
        "account (`details.rule`, `details.retry_after_s`; the `Retry-After` header)"
    }
}
"""The ``responses=`` of a throttled route (add the route's own 429s, e.g. ``account_locked``)."""
