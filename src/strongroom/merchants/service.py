"""Merchant onboarding, terminal keys, members and roles (R-MERCH-1). Services never commit.

A merchant's money sits in ledger accounts of kind ``merchant`` owned by the merchant, one per
asset, which may go negative (like an operator account: a refund after the day's settlement
paid the balance out is owed by the merchant and nets into its next settlement)."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from strongroom.banking import service as banking
from strongroom.db import utcnow
from strongroom.errors import Conflict, Forbidden, NotFound, ValidationFailed, invariant
from strongroom.identity import api_keys, audit
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.merchants import roles
from strongroom.merchants.models import Merchant, MerchantKey, MerchantMember
from strongroom.settings import Settings

OWNER_TYPE: Final = "merchant"
ACCOUNT_KIND: Final = "merchant"
FEE_KIND: Final = "fee"
REGION_CURRENCY: Final = {"HK": "HKD", "CN": "CNY"}
"""A merchant's (and a wallet's) home currency by region (R-REGION-1)."""
CURRENCY_NUMERIC: Final = {"HKD": "344", "CNY": "156"}
DEFAULT_CITY: Final = {"HK": "Hong Kong", "CN": "Shenzhen"}
MCC: Final = re.compile(r"[0-9]{4}")
ID: Final = re.compile(r"m_[0-9a-f]{16}")
NAME_MAX_CHARS: Final = 100
CITY_MAX_CHARS: Final = 15
ACTIVE: Final = "active"
SUSPENDED: Final = "suspended"
STATUSES: Final = (ACTIVE, SUSPENDED)
REASON_MAX_CHARS: Final = 200
PAGE_MAX: Final = 100
CURSOR_MAX_CHARS: Final = 120


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts for a merchant: a terminal key (``key_...``) or a member (a user id)."""

    merchant: Merchant
    role: str
    actor: str

    def require(self, capability: str) -> None:
        roles.require(self.role, capability)


def currency_of(merchant: Merchant) -> str:
    return REGION_CURRENCY[merchant.region]


def onboard(
    *,
    session: Session,
    operator: User,
    name: str,
    mcc: str,
    region: str,
    holder_name: str,
    bank_code: str,
    account_number: str,
    settings: Settings,
    city: str | None = None,
    discount_rate_bps: int | None = None,
    origin: Origin = NOWHERE,
) -> Merchant:
    """A new merchant, audited (``merchant.created``): ``invalid_name``, ``invalid_mcc``,
    ``invalid_region``, ``invalid_city``, ``invalid_discount_rate`` and the settlement bank
    account's format refusals (``banking.check_details``)."""
    name = name.strip()
    if not 0 < len(name) <= NAME_MAX_CHARS:
        raise ValidationFailed(f"name: 1-{NAME_MAX_CHARS} characters", code="invalid_name")
    if not MCC.fullmatch(mcc):
        raise ValidationFailed("mcc: 4 digits (ISO 18245)", code="invalid_mcc")
    if region not in REGION_CURRENCY:
        raise ValidationFailed(
            "region: HK or CN", code="invalid_region", regions=sorted(REGION_CURRENCY)
        )
    city = (city or DEFAULT_CITY[region]).strip()
    if not 0 < len(city) <= CITY_MAX_CHARS:
        raise ValidationFailed(f"city: 1-{CITY_MAX_CHARS} characters", code="invalid_city")
    rate = (
        settings.merchants.discount_rate_bps_default
        if discount_rate_bps is None
        else (discount_rate_bps)
    )
    if not 0 <= rate <= 10_000:
        raise ValidationFailed("discount_rate_bps: 0-10000", code="invalid_discount_rate")
    code, number = banking.check_details(
        holder_name=holder_name,
        bank_code=bank_code,
        account_number=account_number,
        settings=settings.banking,
    )
    merchant = Merchant(
        id=f"m_{uuid.uuid4().hex[:16]}",
        name=name,
        mcc=mcc,
        region=region,
        city=city,
        status="active",
        discount_rate_bps=rate,
        settlement_holder_name=holder_name.strip(),
        settlement_bank_code=code,
        settlement_account_number=number,
        webhook_secret_version=1,
        created_at=utcnow(),
        created_by=operator.id,
    )
    session.add(merchant)
    session.flush()
    ledger.ensure_account_id(
        session=session,
        owner_type=OWNER_TYPE,
        owner_id=merchant.id,
        kind=ACCOUNT_KIND,
        asset=currency_of(merchant),
        allow_negative=True,
    )
    audit.record(
        session=session,
        action="merchant.created",
        category=audit.OPERATOR,
        actor=operator,
        origin=origin,
        details={"merchant_id": merchant.id, "name": name, "region": region, "mcc": mcc},
    )
    return merchant


def get(*, session: Session, merchant_id: str, lock: bool = False) -> Merchant:
    if not ID.fullmatch(merchant_id):
        raise NotFound("no such merchant", code="merchant_not_found")
    found = session.get(Merchant, merchant_id, with_for_update=lock)
    if found is None:
        raise NotFound("no such merchant", code="merchant_not_found")
    return found


def account_id(*, session: Session, merchant: Merchant, asset: str) -> int:
    return ledger.ensure_account_id(
        session=session,
        owner_type=OWNER_TYPE,
        owner_id=merchant.id,
        kind=ACCOUNT_KIND,
        asset=asset,
        allow_negative=True,
    )


def issue_key(
    *,
    session: Session,
    operator: User,
    merchant: Merchant,
    role: str = roles.MANAGER,
    name: str | None = None,
    origin: Origin = NOWHERE,
) -> api_keys.IssuedKey:
    """A terminal key for ``merchant`` with ``role`` (shown once, stored hashed)."""
    if role not in roles.ROLES:
        raise ValidationFailed(
            f"role: one of {', '.join(roles.ROLES)}", code="invalid_role", roles=list(roles.ROLES)
        )
    issued = api_keys.create(
        session=session,
        name=name or f"terminal {uuid.uuid4().hex[:8]}",
        scope=api_keys.MERCHANT,
        owner_id=merchant.id,
        actor=operator,
        origin=origin,
    )
    session.add(MerchantKey(api_key_id=issued.id, merchant_id=merchant.id, role=role))
    session.flush()
    return issued


def revoke_key(
    *, session: Session, operator: User, merchant: Merchant, key_id: str, origin: Origin = NOWHERE
) -> None:
    row = session.get(MerchantKey, key_id) if len(key_id) <= 32 else None
    if row is None or row.merchant_id != merchant.id:
        raise NotFound("no such key of this merchant", code="api_key_not_found")
    api_keys.revoke(session=session, key_id=key_id, actor=operator, origin=origin)


def keys_of(*, session: Session, merchant: Merchant) -> list[tuple[api_keys.ApiKey, str]]:
    rows = session.execute(
        select(api_keys.ApiKey, MerchantKey.role)
        .join(MerchantKey, MerchantKey.api_key_id == api_keys.ApiKey.id)
        .where(MerchantKey.merchant_id == merchant.id)
        .order_by(api_keys.ApiKey.created_at.desc())
    ).all()
    return [(key, role) for key, role in rows]


def principal_of_key(*, session: Session, caller: api_keys.Caller) -> Principal:
    row = session.get(MerchantKey, caller.id)
    if row is None:  # a merchant-scoped key always has its row; anything else is refused
        raise Forbidden("this key belongs to no merchant", code="insufficient_scope")
    merchant = session.get_one(Merchant, row.merchant_id)
    _require_active(merchant)
    return Principal(merchant=merchant, role=row.role, actor=caller.id)


def principal_of_member(*, session: Session, user: User, merchant_id: str | None) -> Principal:
    """A person who works for a merchant (the portal): the one merchant they belong to, or
    the one named (``X-Merchant-Id``) when they belong to several."""
    query = select(MerchantMember).where(MerchantMember.user_id == user.id)
    if merchant_id is not None:
        query = query.where(MerchantMember.merchant_id == merchant_id)
    rows = list(session.scalars(query.limit(2)))
    if not rows:
        raise Forbidden("you do not work for this merchant", code="not_a_merchant_member")
    if len(rows) > 1:
        raise ValidationFailed(
            "you work for several merchants: name one in X-Merchant-Id",
            code="merchant_id_required",
        )
    merchant = session.get_one(Merchant, rows[0].merchant_id)
    _require_active(merchant)
    return Principal(merchant=merchant, role=rows[0].role, actor=user.id)


def _require_active(merchant: Merchant) -> None:
    if merchant.status != ACTIVE:
        raise Forbidden("this merchant is suspended", code="merchant_suspended")


def add_member(
    *,
    session: Session,
    operator: User,
    merchant: Merchant,
    user: User,
    role: str,
    origin: Origin = NOWHERE,
) -> MerchantMember:
    """Give a person a role in a merchant (audited ``merchant.member_set``)."""
    if role not in roles.ROLES:
        raise ValidationFailed(
            f"role: one of {', '.join(roles.ROLES)}", code="invalid_role", roles=list(roles.ROLES)
        )
    if user.operator_role is not None:
        raise Conflict("an operator cannot work for a merchant", code="operator_not_allowed")
    row = session.get(MerchantMember, (merchant.id, user.id))
    if row is None:
        row = MerchantMember(merchant_id=merchant.id, user_id=user.id, role=role)
        session.add(row)
    row.role = role
    audit.record(
        session=session,
        action="merchant.member_set",
        category=audit.OPERATOR,
        actor=operator,
        subject_user_id=user.id,
        origin=origin,
        details={"merchant_id": merchant.id, "role": role},
    )
    session.flush()
    return row


# --------------------------------------------------------------------------- operators


class MerchantAlreadySuspended(Conflict):
    code = "merchant_already_suspended"


class MerchantNotSuspended(Conflict):
    code = "merchant_not_suspended"


def _reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if not 0 < len(cleaned) <= REASON_MAX_CHARS:
        raise ValidationFailed(
            f"reason: 1-{REASON_MAX_CHARS} characters", code="invalid_reason", field="reason"
        )
    return cleaned


def suspend(
    *,
    session: Session,
    operator: User,
    merchant_id: str,
    reason: str,
    origin: Origin = NOWHERE,
) -> Merchant:
    """Stop a merchant (audited ``merchant.suspended`` with the reason): its terminal keys and
    its people are refused (``merchant_suspended``) and its QR codes cannot be paid; its open
    payout-batch rows fail unpaid. Its settlements still pay what it earned (money it is owed).
    Suspending a suspended merchant is refused (``merchant_already_suspended``, 409): the
    first reason stays the one on record."""
    cleaned = _reason(reason)
    merchant = get(session=session, merchant_id=merchant_id, lock=True)
    if merchant.status == SUSPENDED:
        raise MerchantAlreadySuspended(
            "this merchant is suspended already", since=str(merchant.suspended_at)
        )
    merchant.status = SUSPENDED
    merchant.suspended_at = utcnow()
    merchant.suspended_reason = cleaned
    merchant.suspended_by = operator.id
    audit.record(
        session=session,
        action="merchant.suspended",
        category=audit.OPERATOR,
        actor=operator,
        origin=origin,
        details={"merchant_id": merchant.id, "reason": cleaned},
    )
    session.flush()
    return merchant


def reinstate(
    *,
    session: Session,
    operator: User,
    merchant_id: str,
    reason: str,
    origin: Origin = NOWHERE,
) -> Merchant:
    """Let a suspended merchant work again (audited ``merchant.reinstated`` with the reason
    and the suspension's); an active one is refused (``merchant_not_suspended``, 409)."""
    cleaned = _reason(reason)
    merchant = get(session=session, merchant_id=merchant_id, lock=True)
    if merchant.status != SUSPENDED:
        raise MerchantNotSuspended("this merchant is not suspended")
    audit.record(
        session=session,
        action="merchant.reinstated",
        category=audit.OPERATOR,
        actor=operator,
        origin=origin,
        details={
            "merchant_id": merchant.id,
            "reason": cleaned,
            "suspended_reason": merchant.suspended_reason,
        },
    )
    merchant.status = ACTIVE
    merchant.suspended_at = merchant.suspended_reason = merchant.suspended_by = None
    session.flush()
    return merchant


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Merchant]
    next_cursor: str | None


def _cursor_of(merchant: Merchant) -> str:
    raw = f"{merchant.created_at.isoformat()}|{merchant.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor carries; ``invalid_cursor`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, merchant_id = raw.partition("|")
        moment = datetime.fromisoformat(when)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor") from error
    if not ID.fullmatch(merchant_id) or moment.tzinfo is None:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor")
    return moment, merchant_id


def search(
    *,
    session: Session,
    limit: int,
    status: str | None = None,
    region: str | None = None,
    cursor: str | None = None,
) -> Page:
    """Merchants newest first (keyset pages on ``created_at, id``), of one status and region
    or all (``invalid_status``, ``invalid_region``, ``invalid_cursor``: 422)."""
    invariant(1 <= limit <= PAGE_MAX, "page size out of bounds")
    if status is not None and status not in STATUSES:
        raise ValidationFailed("status: active or suspended", code="invalid_status")
    if region is not None and region not in REGION_CURRENCY:
        raise ValidationFailed("region: HK or CN", code="invalid_region")
    if cursor is not None and len(cursor) > CURSOR_MAX_CHARS:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor")
    query = select(Merchant).order_by(Merchant.created_at.desc(), Merchant.id.desc())
    if status is not None:
        query = query.where(Merchant.status == status)
    if region is not None:
        query = query.where(Merchant.region == region)
    if cursor is not None:
        moment, last_id = _after(cursor)
        query = query.where(
            or_(
                Merchant.created_at < moment,
                and_(Merchant.created_at == moment, Merchant.id < last_id),
            )
        )
    rows = list(session.scalars(query.limit(limit + 1)))
    items = rows[:limit]
    more = len(rows) > limit
    return Page(items=items, next_cursor=_cursor_of(items[-1]) if more and items else None)
