"""Create, list, suspend, resume and delete virtual card numbers; resolve one to its owner
(R-TOKEN-1). Services never commit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError, NotFound, ValidationFailed
from strongroom.identity import audit
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.settings import Settings
from strongroom.tokens import domain
from strongroom.tokens.models import VirtualCard
from strongroom.vault import Sealed

ACTIVE: Final = "active"
SUSPENDED: Final = "suspended"
DELETED: Final = "deleted"
NUMBER_TRIES: Final = 32
MERCHANT_ID_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_-.")


class TokenInvalid(DomainError):
    code = "token_invalid"
    status = 422


class TokenSuspended(DomainError):
    code = "token_suspended"
    status = 422


class TokenMerchantMismatch(DomainError):
    code = "token_merchant_mismatch"
    status = 422


@dataclass(frozen=True, slots=True)
class Created:
    card: VirtualCard
    number: str


@dataclass(frozen=True, slots=True)
class Owner:
    """Who pays with a token: what the charge path needs (a merchant sees only ``last4``)."""

    user_id: str
    token_id: str
    last4: str


def number_context(card_id: str) -> str:
    return f"virtual_cards.number_sealed:{card_id}"


def _lookup_key(secret_key: str) -> bytes:
    return hashlib.sha256(b"strongroom virtual card lookup\x00" + secret_key.encode()).digest()


def number_digest(number: str, secret_key: str) -> str:
    return hmac.new(_lookup_key(secret_key), number.encode(), hashlib.sha256).hexdigest()


def number_of(card: VirtualCard, settings: Settings) -> str:
    """The whole number (for its owner only)."""
    sealed = Sealed(key_id=card.number_key_id, ciphertext=card.number_sealed)
    return settings.auth.vault.open(sealed, context=number_context(card.id))


def _merchant(merchant_id: str | None, settings: Settings) -> str | None:
    if merchant_id is None:
        return None
    cleaned = merchant_id.strip()
    limit = settings.virtual_cards.merchant_id_max_chars
    if not cleaned or len(cleaned) > limit or not set(cleaned) <= MERCHANT_ID_CHARS:
        raise ValidationFailed(
            f"a merchant id has 1 to {limit} letters, digits, '_', '-' or '.'",
            code="invalid_merchant_id",
            max_chars=limit,
        )
    return cleaned


def create(
    *,
    session: Session,
    user: User,
    settings: Settings,
    merchant_id: str | None = None,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Created:
    """A new number from the BIN range, unique (never one issued before), sealed."""
    now = now or utcnow()
    merchant = _merchant(merchant_id, settings)
    cards = settings.virtual_cards
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    live = session.scalar(
        select(func.count()).where(VirtualCard.user_id == user.id, VirtualCard.status != DELETED)
    )
    if (live or 0) >= cards.tokens_per_user_max:
        raise ValidationFailed(
            f"at most {cards.tokens_per_user_max} virtual cards: delete one first",
            code="tokens_limit",
            max_tokens=cards.tokens_per_user_max,
        )
    number, digest = _fresh_number(session, settings)
    card_id = "vc_" + secrets.token_hex(12)
    sealed = settings.auth.vault.seal(number, context=number_context(card_id))
    card = VirtualCard(
        id=card_id,
        user_id=user.id,
        number_sealed=sealed.ciphertext,
        number_key_id=sealed.key_id,
        number_digest=digest,
        last4=number[-4:],
        merchant_id=merchant,
        status=ACTIVE,
        created_at=now,
    )
    session.add(card)
    session.flush()
    _audit(session, user, "virtual_card.created", card, origin, now)
    return Created(card=card, number=number)


def _fresh_number(session: Session, settings: Settings) -> tuple[str, str]:
    cards = settings.virtual_cards
    for _ in range(NUMBER_TRIES):
        number = domain.new_number(cards.bin_start, cards.bin_end)
        digest = number_digest(number, settings.secret_key)
        taken = session.scalar(select(VirtualCard.id).where(VirtualCard.number_digest == digest))
        if taken is None:
            return number, digest
    raise Conflict("no free card number in the BIN range", code="bin_range_exhausted")


def _audit(
    session: Session, user: User, action: str, card: VirtualCard, origin: Origin, now: datetime
) -> None:
    audit.record(
        session=session,
        action=action,
        subject_user_id=user.id,
        actor=user,
        origin=origin,
        now=now,
        details={"token_id": card.id, "last4": card.last4},
    )


def cards_of(*, session: Session, user: User) -> list[VirtualCard]:
    """The user's cards but the deleted ones, newest first."""
    return list(
        session.scalars(
            select(VirtualCard)
            .where(VirtualCard.user_id == user.id, VirtualCard.status != DELETED)
            .order_by(VirtualCard.created_at.desc(), VirtualCard.id)
        )
    )


def card_of(*, session: Session, user: User, token_id: str) -> VirtualCard:
    """One of the user's cards; ``token_not_found`` (404) for anyone else's or a deleted one."""
    card = session.get(VirtualCard, token_id) if len(token_id) <= 32 else None
    if card is None or card.user_id != user.id or card.status == DELETED:
        raise NotFound("no such virtual card", code="token_not_found")
    return card


def set_status(
    *,
    session: Session,
    user: User,
    token_id: str,
    status: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> VirtualCard:
    """Suspend, resume (``active``) or delete a card; the same status again is a no-op."""
    now = now or utcnow()
    card = card_of(session=session, user=user, token_id=token_id)
    if card.status != status:
        card.status, card.status_changed_at = status, now
        _audit(session, user, f"virtual_card.{status}", card, origin, now)
        session.flush()
    return card


def resolve(
    *, session: Session, number: str, settings: Settings, merchant_id: str | None = None
) -> Owner:
    """The owner of a card number a merchant charges: ``token_invalid`` (not a live number of
    ours, deleted included), ``token_suspended``, ``token_merchant_mismatch`` (restricted to
    another merchant)."""
    cleaned = number.replace(" ", "")
    if len(cleaned) != domain.NUMBER_DIGITS or not domain.luhn_valid(cleaned):
        raise TokenInvalid("not a valid card number")
    digest = number_digest(cleaned, settings.secret_key)
    card = session.scalars(select(VirtualCard).where(VirtualCard.number_digest == digest)).first()
    if card is None or card.status == DELETED:
        raise TokenInvalid("not a card number of this wallet")
    if card.status == SUSPENDED:
        raise TokenSuspended("this virtual card is suspended")
    if card.merchant_id is not None and card.merchant_id != merchant_id:
        raise TokenMerchantMismatch("this virtual card may be charged by another merchant only")
    return Owner(user_id=card.user_id, token_id=card.id, last4=card.last4)
