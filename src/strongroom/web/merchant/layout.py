"""What every merchant-portal page shares: who is signed in and for which merchant
(``MemberGuard``), the navigation by role, and ``page()``.

A person signs in with their own account (the shared two-step sign-in, ``account.py``); the
portal serves the merchant they work for, or the one they chose (``sr_merchant``, a cookie
holding only a merchant id: membership and role are read again on every request, through
``merchants.service.principal_of_member``, as the terminal API does for a bearer token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from strongroom.api import SessionDep
from strongroom.errors import Conflict, DomainError
from strongroom.identity.models import User
from strongroom.merchants import portal, roles
from strongroom.merchants import service as merchants
from strongroom.web import cookies, core, sessions
from strongroom.web.i18n import N_

PREFIX: Final = "/merchant"
HOME: Final = "/merchant/"
SIGN_IN: Final = "/merchant/signin"
CHOOSE: Final = "/merchant/choose"
MERCHANT_COOKIE: Final = "sr_merchant"
MERCHANT_COOKIE_MAX_AGE_S: Final = 30 * 24 * 3600
MERCHANT_ID_MAX_CHARS: Final = 18


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str  # a msgid
    capability: str  # a key of merchants.roles.TABLE, or portal.OWNERS_ONLY


NAVIGATION: Final = (
    NavItem(HOME, N_("Charges"), "read"),
    NavItem("/merchant/pos", N_("Till"), "charge"),
    NavItem("/merchant/export", N_("Export"), "export"),
    NavItem("/merchant/settlements", N_("Settlements"), "read"),
    NavItem("/merchant/payouts", N_("Batch payouts"), "payout"),
    NavItem("/merchant/keys", N_("Terminal keys"), "settings"),
    NavItem("/merchant/webhook", N_("Webhook"), "settings"),
    NavItem("/merchant/members", N_("People and roles"), portal.OWNERS_ONLY),
)
ROLE_NAMES: Final = {
    roles.OWNER: N_("Owner"),
    roles.MANAGER: N_("Manager"),
    roles.CASHIER: N_("Cashier"),
    roles.FINANCE: N_("Finance"),
}


def may(role: str, capability: str) -> bool:
    if capability == portal.OWNERS_ONLY:
        return role == roles.OWNER
    return role in roles.TABLE[capability]


@dataclass(frozen=True, slots=True)
class Member:
    """A signed-in person working for ``principal.merchant`` with ``principal.role``."""

    signed_in: sessions.SignedIn
    principal: merchants.Principal
    several: bool

    @property
    def user(self) -> User:
        return self.signed_in.user

    def may(self, capability: str) -> bool:
        return may(self.principal.role, capability)


class ChooseMerchant(Conflict):
    """Several merchants and none chosen (or the chosen one is no longer theirs): a page that
    links to the chooser (``/merchant/choose``)."""

    code = "merchant_choice_required"

    def __init__(self) -> None:
        super().__init__("choose a merchant")


def _principal(session: Session, user: User, chosen: str | None) -> merchants.Principal:
    """The chosen merchant's principal; a choice no longer theirs counts as no choice."""
    try:
        return merchants.principal_of_member(session=session, user=user, merchant_id=chosen)
    except DomainError as refused:
        if chosen is None or refused.code != "not_a_merchant_member":
            raise
    return merchants.principal_of_member(session=session, user=user, merchant_id=None)


def member_of(request: Request, session: Session) -> Member:
    signed_in = sessions.signed_in(request, session)
    chosen = cookies.get(request, MERCHANT_COOKIE)
    if chosen is not None and (len(chosen) > MERCHANT_ID_MAX_CHARS or not chosen.startswith("m_")):
        chosen = None
    try:
        principal = _principal(session, signed_in.user, chosen)
    except DomainError as refused:
        if refused.code != "merchant_id_required":
            raise
        request.state.merchant_choice = True
        raise ChooseMerchant() from refused
    several = len(portal.memberships(session=session, user=signed_in.user)) > 1
    member = Member(signed_in=signed_in, principal=principal, several=several)
    request.state.merchant_who = _who(member)  # plain values: error pages render after the session
    return member


class MemberGuard:
    """Dependency: the signed-in member, refused (403 ``merchant_role_forbidden``, a page in
    the portal's layout) unless their role holds ``capability``."""

    def __init__(self, capability: str) -> None:
        self.capability = capability

    def __call__(self, request: Request, session: SessionDep) -> Member:
        member = member_of(request, session)
        if self.capability == portal.OWNERS_ONLY:
            portal.require_owner(member.principal)
        else:
            roles.require(member.principal.role, self.capability)
        return member


def guard(capability: str) -> Any:
    return Depends(MemberGuard(capability))


def navigation(request: Request, role: str | None) -> list[NavItem]:
    if role is None:
        return []
    return [
        item
        for item in core.mounted(request, NAVIGATION, "merchant_navigation")
        if may(role, item.capability)
    ]


def _who(member: Member) -> dict[str, Any]:
    """What the layout shows of the member (plain values)."""
    return {
        "merchant": member.principal.merchant.name,
        "email": member.user.email,
        "role": member.principal.role,
        "role_name": ROLE_NAMES.get(member.principal.role, ""),
        "several": member.several,
    }


def _values(request: Request, who: dict[str, Any] | None) -> dict[str, Any]:
    return {"who": who, "nav": navigation(request, who["role"] if who else None)}


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    member: Member | None,
    current: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    who = _who(member) if member is not None else None
    values = {**_values(request, who), "member": member, "current": current, **(context or {})}
    return core.render(request, template, values, status_code=status_code)


def error_context(request: Request) -> dict[str, Any]:
    who = getattr(request.state, "merchant_who", None)
    home = HOME if who else SIGN_IN
    if getattr(request.state, "merchant_choice", False):
        home = CHOOSE
    return {**_values(request, who), "current": None, "home": home}
