"""Gifts / red packets (R-GIFT-1, SPEC §13 wave 2): send one, claim a share, and the sender's
own list and detail.

Sending is once per Idempotency-Key (SPEC P3) like a transfer, but not through the group-commit
batcher: the T+N check must read the balance under the same lock as the transfer that moves the
money (R-TN-2), so the key is claimed, the money moved, the gift stored and the outcome settled
in the request's own unit of work (``create_once``, which the Lite app's form uses too)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy.orm import Session

from strongroom import paging
from strongroom.api import (
    AssetsDep,
    IdempotencyKeyHeader,
    RowIdPath,
    SessionDep,
    SettingsDep,
    UserDep,
)
from strongroom.db import utcnow
from strongroom.errors import Conflict
from strongroom.gifts import service
from strongroom.gifts.models import Gift
from strongroom.gifts.split import Split
from strongroom.identity.models import User
from strongroom.money import (
    AMOUNT_JSON_SCHEMA,
    ASSET_JSON_SCHEMA,
    AssetRegistry,
    Money,
    format_amount,
    required_in_schema,
)
from strongroom.movements import idempotency
from strongroom.movements.idempotency import Outcome
from strongroom.settings import Settings

router = APIRouter(prefix="/v1", tags=["gifts"])
CURSOR = "gifts"
CREATED = "created"

SEND_422 = (
    "`invalid_amount`, `unknown_asset`, `invalid_shares` (1 to the configured maximum), "
    "`gift_amount_too_small` (each share needs one minor unit), `insufficient_funds`, "
    "`funds_locked` (locked under T+N until `unlocks_at`: gifts may not use it), "
    "`idempotency_key_required`, `invalid_idempotency_key`"
)


class GiftIn(BaseModel):
    model_config = ConfigDict(json_schema_extra=required_in_schema("asset", "amount"))

    asset: Annotated[Any, WithJsonSchema(ASSET_JSON_SCHEMA)] = None
    amount: Annotated[Any, WithJsonSchema(AMOUNT_JSON_SCHEMA)] = None
    shares: int = Field(description="how many shares: 1 to the configured maximum (100)")
    split: Literal["equal", "random"] = "equal"


class GiftCreatedOut(BaseModel):
    id: int
    claim_code: str
    expires_at: datetime
    claim_link: str


class ClaimIn(BaseModel):
    claim_code: str = Field(
        min_length=1, max_length=64, description="as shared: `XXXXX-XXXXX-XXXXX-XXXXX`"
    )


class ClaimOut(BaseModel):
    asset: str
    amount: str


class ShareOut(BaseModel):
    amount: str
    claimed: bool
    claimed_at: datetime | None


class GiftOut(BaseModel):
    id: int
    asset: str
    amount: str
    shares: int
    split: str
    status: str = Field(description="`open`, `claimed` (every share) or `expired` (rest refunded)")
    claimed_shares: int
    claimed_amount: str
    refunded_amount: str
    claim_code: str
    claim_link: str
    created_at: datetime
    expires_at: datetime


class GiftDetailOut(GiftOut):
    parts: list[ShareOut]


class GiftPageOut(BaseModel):
    items: list[GiftOut]
    next_cursor: str | None


def create_once(
    *,
    session: Session,
    settings: Settings,
    user: User,
    operation: str,
    key: str | None,
    request: dict[str, Any],
    amount: Money,
    shares: int,
    split: Split,
) -> tuple[Gift, str]:
    """Send a gift once per (user, operation, key): the gift and its claim code, the same on a
    replay. A refusal rolls the key back with everything else, so a retry runs anew."""
    claim = idempotency.claim_for(
        actor_id=user.id,
        operation=operation,
        key=key,
        request=request,
        key_max_chars=settings.idempotency.key_max_chars,
    )
    replay = _replay(session, settings, user, claim)
    if replay is not None:
        return replay
    if not idempotency.claim_all(session=session, claims=[claim]):
        # another request with this key committed while this one waited for its row
        replay = _replay(session, settings, user, claim)
        if replay is not None:
            return replay
        raise Conflict(
            "a request with this Idempotency-Key is still in progress",
            code="idempotency_key_in_progress",
        )
    created = service.create(
        session=session,
        sender=user,
        amount=amount,
        shares=shares,
        split=split,
        settings=settings,
        now=utcnow(),
    )
    outcome = Outcome(id=str(created.gift.id), status=CREATED)
    idempotency.settle(session=session, done=[(claim, outcome)], refused=[])
    return created.gift, created.claim_code


def _replay(
    session: Session, settings: Settings, user: User, claim: idempotency.Claim
) -> tuple[Gift, str] | None:
    stored = idempotency.stored_outcome(session=session, claim=claim)
    if stored is None:
        return None
    gift = service.get_for_sender(session=session, sender_id=user.id, gift_id=int(stored.id))
    return gift, service.claim_code_of(gift, settings.auth.vault)


@router.post(
    "/gifts",
    status_code=201,
    response_model=GiftCreatedOut,
    responses={
        201: {"model": GiftCreatedOut},
        403: {"description": "`email_unverified`, `operator_not_allowed`"},
        409: {"description": "`idempotency_key_reused`, `idempotency_key_in_progress`"},
        422: {"description": SEND_422},
    },
)
def create_gift(
    body: GiftIn,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Send a gift (red packet): the amount moves at once from your wallet into escrow, cut
    into `shares` shares (`equal`: the remainder one minor unit to the first shares; `random`:
    each at least one minor unit). Share the claim code or link; what is unclaimed after 24
    hours comes back to you."""
    amount = registry.money(body.amount, body.asset)
    gift, code = create_once(
        session=session,
        settings=settings,
        user=user,
        operation=f"{request.method} {request.url.path}",
        key=idempotency_key,
        request=body.model_dump(mode="json"),
        amount=amount,
        shares=body.shares,
        split=Split(body.split),
    )
    out = GiftCreatedOut(
        id=gift.id,
        claim_code=code,
        expires_at=gift.expires_at,
        claim_link=service.claim_link(settings.mail.public_url, code),
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


@router.post(
    "/gifts/claim",
    response_model=ClaimOut,
    responses={
        400: {"description": "`cross_region_transfer` (the gift was sent in another region)"},
        403: {
            "description": "`email_unverified`, `gift_own_claim` (a sender cannot claim their "
            "own gift), `operator_not_allowed`"
        },
        404: {"description": "`gift_not_found`: no gift has this code"},
        409: {
            "description": "`gift_already_claimed` (one share per person), `gift_exhausted` "
            "(every share taken), `gift_expired`"
        },
        422: {"description": "`invalid_claim_code`: not a code's shape"},
    },
)
def claim_gift(
    body: ClaimIn,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> ClaimOut:
    """Claim the next share of a gift into your wallet."""
    claimed = service.claim(
        session=session, claimer=user, code=body.claim_code, settings=settings, now=utcnow()
    )
    return ClaimOut(asset=claimed.asset, amount=_fmt(registry, claimed.asset, claimed.amount_minor))


@router.get(
    "/gifts", response_model=GiftPageOut, responses={422: {"description": "`invalid_cursor`"}}
)
def list_gifts(
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> GiftPageOut:
    """The gifts you sent, newest first: status and claimed shares."""
    size = min(limit or settings.gifts.page_size_default, settings.gifts.page_size_max)
    before = paging.decode(CURSOR, cursor) if cursor else None
    rows = service.sent_by(session=session, sender_id=user.id, limit=size + 1, before_id=before)
    more = len(rows) > size
    rows = rows[:size]
    return GiftPageOut(
        items=[gift_out(gift, settings, registry) for gift in rows],
        next_cursor=paging.encode(CURSOR, rows[-1].id) if more and rows else None,
    )


@router.get(
    "/gifts/{gift_id:int}",
    response_model=GiftDetailOut,
    responses={
        404: {
            "description": "`gift_not_found`: no gift of yours has this id; `not_found`: the "
            "path's id is not a number (`/v1/gifts/claim` is the claim, a POST)"
        }
    },
)
def get_gift(
    gift_id: RowIdPath,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> GiftDetailOut:
    """One gift you sent, with its shares (amount, claimed or not)."""
    gift = service.get_for_sender(session=session, sender_id=user.id, gift_id=gift_id)
    summary = gift_out(gift, settings, registry)
    parts = [
        ShareOut(
            amount=_fmt(registry, gift.asset, share.amount_minor),
            claimed=share.claimed_by is not None,
            claimed_at=share.claimed_at,
        )
        for share in service.shares_of(session=session, gift_id=gift.id)
    ]
    return GiftDetailOut(**summary.model_dump(), parts=parts)


def gift_out(gift: Gift, settings: Settings, registry: AssetRegistry) -> GiftOut:
    code = service.claim_code_of(gift, settings.auth.vault)
    return GiftOut(
        id=gift.id,
        asset=gift.asset,
        amount=_fmt(registry, gift.asset, gift.amount_minor),
        shares=gift.shares,
        split=gift.split,
        status=gift.status,
        claimed_shares=gift.claimed_shares,
        claimed_amount=_fmt(registry, gift.asset, gift.claimed_minor),
        refunded_amount=_fmt(registry, gift.asset, gift.refunded_minor),
        claim_code=code,
        claim_link=service.claim_link(settings.mail.public_url, code),
        created_at=gift.created_at,
        expires_at=gift.expires_at,
    )


def _fmt(registry: AssetRegistry, asset: str, amount_minor: int) -> str:
    return format_amount(amount_minor, registry.get(asset).scale)
