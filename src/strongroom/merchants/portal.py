"""What the merchant portal asks of the merchants domain beyond the terminal API: the merchants
a person works for, the members and their roles (set and removed by an owner), terminal keys
issued and revoked by the merchant's own people, and the webhook settings.

Every change is audited (``merchant.member_set``, ``merchant.member_removed``,
``merchant.webhook_set``; keys: ``api_key.created``/``api_key.revoked``) with the member as the
actor. Rights come from ``merchants.roles``: keys and the webhook need ``settings`` (owner,
manager); members need ``members`` (owners only). An owner cannot remove or demote themselves,
so a merchant always keeps the owner who made the change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.errors import Conflict, Forbidden, NotFound, ValidationFailed
from strongroom.identity import api_keys, audit
from strongroom.identity import service as identity
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.merchants import roles, webhooks
from strongroom.merchants import service as merchants
from strongroom.merchants.models import Merchant, MerchantMember

OWNERS_ONLY: Final = "members"
"""The capability of managing members: owners only (not in ``roles.TABLE``, which the terminal
keys share: a key never manages people)."""


@dataclass(frozen=True, slots=True)
class Membership:
    merchant: Merchant
    role: str


@dataclass(frozen=True, slots=True)
class MemberRow:
    user_id: str
    email: str
    name: str
    role: str


def memberships(*, session: Session, user: User) -> list[Membership]:
    """The merchants ``user`` works for, by name."""
    rows = session.execute(
        select(Merchant, MerchantMember.role)
        .join(MerchantMember, MerchantMember.merchant_id == Merchant.id)
        .where(MerchantMember.user_id == user.id)
        .order_by(Merchant.name, Merchant.id)
    ).all()
    return [Membership(merchant=merchant, role=role) for merchant, role in rows]


def names(*, session: Session, merchant_ids: set[str]) -> dict[str, str]:
    """Merchants' names by id (a payer's history and receipts name the shop)."""
    if not merchant_ids:
        return {}
    rows = session.execute(select(Merchant.id, Merchant.name).where(Merchant.id.in_(merchant_ids)))
    return {merchant_id: name for merchant_id, name in rows.all()}


def require_owner(principal: merchants.Principal) -> None:
    if principal.role != roles.OWNER:
        raise Forbidden(
            "only an owner may manage members",
            code="merchant_role_forbidden",
            capability=OWNERS_ONLY,
            role=principal.role,
            roles=[roles.OWNER],
        )


def members(*, session: Session, merchant: Merchant) -> list[MemberRow]:
    rows = session.execute(
        select(User, MerchantMember.role)
        .join(MerchantMember, MerchantMember.user_id == User.id)
        .where(MerchantMember.merchant_id == merchant.id)
        .order_by(User.email)
    ).all()
    return [MemberRow(user.id, user.email, user.name, role) for user, role in rows]


def set_member(
    *,
    session: Session,
    principal: merchants.Principal,
    actor: User,
    email: str,
    role: str,
    origin: Origin = NOWHERE,
) -> MemberRow:
    """An owner adds a person (by their account's email) or changes their role."""
    require_owner(principal)
    if role not in roles.ROLES:
        raise ValidationFailed(
            f"role: one of {', '.join(roles.ROLES)}", code="invalid_role", roles=list(roles.ROLES)
        )
    user = identity.find_user(session=session, reference=email) if "@" in email else None
    if user is None:
        raise NotFound("no user with that email", code="user_not_found")
    if user.id == actor.id:
        raise Conflict("an owner cannot change their own role", code="own_role")
    if user.operator_role is not None:
        raise Conflict("an operator cannot work for a merchant", code="operator_not_allowed")
    merchant = principal.merchant
    row = session.get(MerchantMember, (merchant.id, user.id))
    if row is None:
        row = MerchantMember(merchant_id=merchant.id, user_id=user.id, role=role)
        session.add(row)
    row.role = role
    audit.record(
        session=session,
        action="merchant.member_set",
        category=audit.OPERATOR,
        actor=actor,
        subject_user_id=user.id,
        origin=origin,
        details={"merchant_id": merchant.id, "role": role, "by": "owner"},
    )
    session.flush()
    return MemberRow(user.id, user.email, user.name, role)


def remove_member(
    *,
    session: Session,
    principal: merchants.Principal,
    actor: User,
    user_id: str,
    origin: Origin = NOWHERE,
) -> None:
    """An owner removes a person from the merchant (never themselves)."""
    require_owner(principal)
    merchant = principal.merchant
    row = session.get(MerchantMember, (merchant.id, user_id)) if len(user_id) <= 32 else None
    if row is None:
        raise NotFound("no such member of this merchant", code="member_not_found")
    if user_id == actor.id:
        raise Conflict("an owner cannot remove themselves", code="own_role")
    session.delete(row)
    audit.record(
        session=session,
        action="merchant.member_removed",
        category=audit.OPERATOR,
        actor=actor,
        subject_user_id=user_id,
        origin=origin,
        details={"merchant_id": merchant.id},
    )
    session.flush()


def issue_key(
    *,
    session: Session,
    principal: merchants.Principal,
    actor: User,
    role: str,
    name: str | None,
    origin: Origin = NOWHERE,
) -> api_keys.IssuedKey:
    """A terminal key issued by the merchant's owner or manager (shown once, stored hashed).
    A manager cannot issue an owner's key."""
    roles.require(principal.role, "settings")
    if role == roles.OWNER and principal.role != roles.OWNER:
        raise Forbidden(
            "only an owner may issue an owner's key",
            code="merchant_role_forbidden",
            capability=OWNERS_ONLY,
            role=principal.role,
            roles=[roles.OWNER],
        )
    return merchants.issue_key(
        session=session,
        operator=actor,
        merchant=principal.merchant,
        role=role,
        name=name,
        origin=origin,
    )


def revoke_key(
    *,
    session: Session,
    principal: merchants.Principal,
    actor: User,
    key_id: str,
    origin: Origin = NOWHERE,
) -> None:
    roles.require(principal.role, "settings")
    merchants.revoke_key(
        session=session, operator=actor, merchant=principal.merchant, key_id=key_id, origin=origin
    )


def set_webhook(
    *,
    session: Session,
    principal: merchants.Principal,
    actor: User,
    url: str,
    rotate: bool,
    secret_key: str,
    origin: Origin = NOWHERE,
) -> str:
    """The webhook URL (and a new signing secret when ``rotate``: the old one stops at once),
    as ``PUT /v1/merchant/webhook`` does; returns the current secret."""
    roles.require(principal.role, "settings")
    merchant = session.get_one(Merchant, principal.merchant.id, with_for_update=True)
    merchant.webhook_url = url
    if rotate:
        merchant.webhook_secret_version += 1
    audit.record(
        session=session,
        action="merchant.webhook_set",
        category=audit.OPERATOR,
        actor=actor,
        origin=origin,
        details={"merchant_id": merchant.id, "rotated": rotate},
    )
    session.flush()
    return webhooks.secret_for(merchant, secret_key)
