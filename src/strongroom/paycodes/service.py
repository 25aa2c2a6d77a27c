"""Devices, codes, and resolving a code at the till (R-CODE-1). Services never commit.

The charge path calls ``resolve_and_consume`` inside its own unit of work: the code's use is a
row in that transaction, so a charge that is refused afterwards gives the code back (the row is
rolled back with it), and of two charges racing with one code exactly one gets the row.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.db import utcnow
from strongroom.errors import Conflict, DomainError, NotFound, ValidationFailed
from strongroom.identity import audit
from strongroom.identity.audit import NOWHERE, Origin
from strongroom.identity.models import User
from strongroom.paycodes import domain
from strongroom.paycodes.models import CodeUse, Device
from strongroom.settings import PaymentCodeSettings
from strongroom.vault import Keyring, Sealed

LOCATOR_TRIES = 32
"""Random locators tried before giving up (a collision is rare until ~half are taken)."""
DEFAULT_DEVICE_NAME = "Strongroom app"


class PaymentCodeInvalid(DomainError):
    code = "payment_code_invalid"
    status = 422


class PaymentCodeExpired(DomainError):
    code = "payment_code_expired"
    status = 422


class PaymentCodeUsed(DomainError):
    code = "payment_code_used"
    status = 409


class PaymentCodeRevoked(DomainError):
    code = "payment_code_revoked"
    status = 422


@dataclass(frozen=True, slots=True)
class Registered:
    device: Device
    secret: str
    """Base32: shown once, never again (the server keeps it sealed)."""


@dataclass(frozen=True, slots=True)
class Issued:
    code: str
    device_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Resolved:
    """Who pays with an accepted code."""

    user_id: str
    device_id: str
    step: int


def secret_context(device_id: str) -> str:
    """What a device secret is sealed for (the vault's associated data)."""
    return f"paycode_devices.secret_sealed:{device_id}"


def _secret(device: Device, keyring: Keyring) -> bytes:
    sealed = Sealed(key_id=device.secret_key_id, ciphertext=device.secret_sealed)
    return domain.secret_bytes(keyring.open(sealed, context=secret_context(device.id)))


def register_device(
    *,
    session: Session,
    user: User,
    name: str,
    settings: PaymentCodeSettings,
    keyring: Keyring,
    server_held: bool = False,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Registered:
    """A new device with a fresh secret and locator; ``devices_limit`` (422) when the user has
    ``devices_per_user_max`` active devices already."""
    now = now or utcnow()
    name = name.strip()
    if not name or len(name) > settings.device_name_max_chars:
        raise ValidationFailed(
            f"a device name has 1 to {settings.device_name_max_chars} characters",
            code="invalid_device_name",
            max_chars=settings.device_name_max_chars,
        )
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    active = session.scalar(
        select(func.count()).where(Device.user_id == user.id, Device.revoked_at.is_(None))
    )
    if (active or 0) >= settings.devices_per_user_max:
        raise ValidationFailed(
            f"at most {settings.devices_per_user_max} devices: revoke one first",
            code="devices_limit",
            max_devices=settings.devices_per_user_max,
        )
    secret = domain.new_secret()
    device_id = "d_" + secrets.token_hex(12)
    sealed = keyring.seal(secret, context=secret_context(device_id))
    device = Device(
        id=device_id,
        user_id=user.id,
        name=name,
        locator=_free_locator(session),
        secret_sealed=sealed.ciphertext,
        secret_key_id=sealed.key_id,
        server_held=server_held,
        created_at=now,
    )
    session.add(device)
    session.flush()
    audit.record(
        session=session,
        action="payment_device.registered",
        subject_user_id=user.id,
        actor=user,
        origin=origin,
        now=now,
        details={"device_id": device_id, "name": name},
    )
    return Registered(device=device, secret=secret)


def _free_locator(session: Session) -> int:
    """A random locator no device has (the unique index decides a race; the loser's request
    fails and may be retried)."""
    for _ in range(LOCATOR_TRIES):
        locator = domain.new_locator()
        if session.scalar(select(Device.id).where(Device.locator == locator)) is None:
            return locator
    raise Conflict("no free device locator: ask the operator", code="locators_exhausted")


def devices_of(*, session: Session, user: User) -> list[Device]:
    """The user's devices, the revoked ones too, newest first."""
    return list(
        session.scalars(
            select(Device)
            .where(Device.user_id == user.id)
            .order_by(Device.created_at.desc(), Device.id)
        )
    )


def device_of(*, session: Session, user: User, device_id: str) -> Device:
    """One of the user's devices; ``device_not_found`` (404) for anyone else's."""
    device = session.get(Device, device_id) if len(device_id) <= 32 else None
    if device is None or device.user_id != user.id:
        raise NotFound("no such device", code="device_not_found")
    return device


def revoke_device(
    *,
    session: Session,
    user: User,
    device_id: str,
    origin: Origin = NOWHERE,
    now: datetime | None = None,
) -> Device:
    """Revoke a device: none of its codes is accepted any more. Revoking it again is a no-op."""
    now = now or utcnow()
    device = device_of(session=session, user=user, device_id=device_id)
    if device.revoked_at is None:
        device.revoked_at = now
        audit.record(
            session=session,
            action="payment_device.revoked",
            subject_user_id=user.id,
            actor=user,
            origin=origin,
            now=now,
            details={"device_id": device.id},
        )
        session.flush()
    return device


def issue_code(
    *,
    session: Session,
    user: User,
    settings: PaymentCodeSettings,
    keyring: Keyring,
    device_id: str | None = None,
    now: datetime | None = None,
) -> Issued:
    """The current code of one of the user's active devices, or of the user's server-held
    default device (created on first use) when none is named."""
    now = now or utcnow()
    if device_id is None:
        device = _default_device(session, user, settings, keyring, now)
    else:
        device = device_of(session=session, user=user, device_id=device_id)
        if device.revoked_at is not None:
            raise ValidationFailed("this device is revoked", code="device_revoked")
    step = domain.step_of(now, settings.step_s)
    text = domain.code(
        issuer_id=settings.issuer_id,
        locator=device.locator,
        secret=_secret(device, keyring),
        step=step,
    )
    expires_at = domain.step_start(step + settings.past_steps + 1, settings.step_s)
    return Issued(code=text, device_id=device.id, expires_at=expires_at)


def _default_device(
    session: Session, user: User, settings: PaymentCodeSettings, keyring: Keyring, now: datetime
) -> Device:
    # the user's row lock first: two first codes at once make one default device, not two
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    found = session.scalars(
        select(Device)
        .where(Device.user_id == user.id, Device.server_held, Device.revoked_at.is_(None))
        .order_by(Device.created_at)
        .limit(1)
    ).first()
    if found is not None:
        return found
    registered = register_device(
        session=session,
        user=user,
        name=DEFAULT_DEVICE_NAME,
        settings=settings,
        keyring=keyring,
        server_held=True,
        now=now,
    )
    return registered.device


def resolve_and_consume(
    *,
    session: Session,
    code: str,
    settings: PaymentCodeSettings,
    keyring: Keyring,
    now: datetime | None = None,
) -> Resolved:
    """The user (and device) a code pays for, and the code marked used in this transaction.

    Refusals: ``payment_code_invalid`` (not 24 digits, another issuer, no such locator, a
    wrong one-time password), ``payment_code_revoked`` (its device is revoked),
    ``payment_code_expired`` (its step ended more than the window ago),
    ``payment_code_used`` (accepted once already: by a committed charge, or by one still
    running, which this call waits for on PostgreSQL)."""
    now = now or utcnow()
    device, step, _ = _resolve(session, code, settings, keyring, now)
    _consume(session, device, step, now)
    device.last_used_at = now
    session.flush()
    return Resolved(user_id=device.user_id, device_id=device.id, step=step)


def resolve(
    *,
    session: Session,
    code: str,
    settings: PaymentCodeSettings,
    keyring: Keyring,
    now: datetime | None = None,
) -> Resolved:
    """``resolve_and_consume`` less the use, for a caller that writes the use itself in the
    transaction that moves the money (``use_row``: the merchant charges' group commit, whose
    ``INSERT ... ON CONFLICT DO NOTHING`` of it decides a race). The same refusals,
    ``payment_code_used`` for a use already committed. Marks the device used in the caller's
    transaction (its ``last_used_at``: also when the ledger refuses the charge afterwards)."""
    now = now or utcnow()
    device, step, used = _resolve(session, code, settings, keyring, now, uses=True)
    if step in used:
        raise used_again()
    device.last_used_at = now
    return Resolved(user_id=device.user_id, device_id=device.id, step=step)


def use_row(resolved: Resolved, now: datetime) -> dict[str, object]:
    """The ``paycode_uses`` row of a resolved code (its primary key is the code)."""
    return {"device_id": resolved.device_id, "step": resolved.step, "used_at": now}


def used_again() -> PaymentCodeUsed:
    """The refusal of a code whose use another charge wrote first."""
    return PaymentCodeUsed("this payment code was used already: ask for a new one")


_DEVICE_AND_USES = (
    select(Device, CodeUse.step)
    .outerjoin(
        CodeUse,
        and_(
            CodeUse.device_id == Device.id,
            CodeUse.step >= bindparam("oldest", type_=CodeUse.step.type),
        ),
    )
    .where(Device.locator == bindparam("locator", type_=Device.locator.type))
)
"""A device and its codes used in the accepted window, in ONE statement (built once)."""


def _resolve(
    session: Session,
    code: str,
    settings: PaymentCodeSettings,
    keyring: Keyring,
    now: datetime,
    uses: bool = False,
) -> tuple[Device, int, set[int]]:
    """The device and step of ``code``, and with ``uses`` the device's steps already used in
    the accepted window (read with the device: one statement)."""
    parts = domain.split(code)
    if parts is None or not hmac.compare_digest(parts[0], settings.issuer_id):
        raise PaymentCodeInvalid("this is not a payment code of this wallet")
    _, locator, given = parts
    if uses:
        oldest = domain.step_of(now, settings.step_s) - settings.past_steps
        rows = session.execute(_DEVICE_AND_USES, {"locator": locator, "oldest": oldest}).all()
        device = rows[0][0] if rows else None
        used = {row[1] for row in rows if row[1] is not None}
    else:
        device = session.scalars(select(Device).where(Device.locator == locator)).first()
        used = set()
    if device is None:
        raise PaymentCodeInvalid("this is not a payment code of this wallet")
    step = _matching_step(device, given, settings, keyring, now)
    if step is None:
        raise PaymentCodeInvalid("this is not a payment code of this wallet")
    if device.revoked_at is not None:
        raise PaymentCodeRevoked("the device that showed this code was revoked")
    current = domain.step_of(now, settings.step_s)
    if step < current - settings.past_steps:
        expired_at = domain.step_start(step + settings.past_steps + 1, settings.step_s)
        raise PaymentCodeExpired(
            "this payment code expired: ask the customer for a new one",
            expired_at=expired_at.isoformat(),  # JSON: the API answers it in the details
        )
    return device, step, used


def _matching_step(
    device: Device, given: str, settings: PaymentCodeSettings, keyring: Keyring, now: datetime
) -> int | None:
    """The step whose OTP is ``given``, newest first from the future steps accepted back to
    the expired ones still told apart (bounded: at most 2 + 10 + 200 HMACs)."""
    secret = _secret(device, keyring)
    current = domain.step_of(now, settings.step_s)
    oldest = max(current - settings.past_steps - settings.expired_lookback_steps, 0)
    found: int | None = None
    for step in range(current + settings.future_steps, oldest - 1, -1):
        # every step is compared (no early exit), so the time taken tells nothing
        if hmac.compare_digest(domain.otp(secret, step), given) and found is None:
            found = step
    return found


def _consume(session: Session, device: Device, step: int, now: datetime) -> None:
    insert = db.insert_for(session)
    added = session.execute(
        insert(CodeUse)
        .values(device_id=device.id, step=step, used_at=now)
        .on_conflict_do_nothing()
        .returning(CodeUse.step)
    ).first()
    if added is None:
        raise used_again()
