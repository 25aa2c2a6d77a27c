"""The payment-code algorithm (pure; docs/payment-codes.md is its specification).

A code is 24 digits: the issuer id (8), the device's locator (7) and a one-time password (9)::

    T      = floor(unix_time / step_s)                       (step_s = 30 by default)
    mac    = HMAC-SHA256(secret, T as 8 bytes big-endian)
    offset = mac[31] & 0x0F                                   (RFC 4226 dynamic truncation,
    otp    = (int(mac[offset : offset + 8]) & 0x7FFF...FF)     widened to 63 bits so that the
             mod 10^9                                          modulo bias is below 1e-9)
    code   = issuer_id + f"{locator:07d}" + f"{otp:09d}"

The locator names the device (unique, random, never reused), so the server finds the one
device a code belongs to without trying them all; the OTP proves the secret and the time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Final

from strongroom.errors import invariant

ISSUER_DIGITS: Final = 8
LOCATOR_DIGITS: Final = 7
OTP_DIGITS: Final = 9
CODE_DIGITS: Final = ISSUER_DIGITS + LOCATOR_DIGITS + OTP_DIGITS
LOCATOR_SPACE: Final = 10**LOCATOR_DIGITS
SECRET_BYTES: Final = 32
TRUNCATION_MASK: Final = (1 << 63) - 1


def new_secret() -> str:
    """A device secret: 32 random bytes as base32 (RFC 4648, no padding), as TOTP apps use."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def secret_bytes(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def new_locator() -> int:
    return secrets.randbelow(LOCATOR_SPACE)


def step_of(at: datetime, step_s: int) -> int:
    """The time step ``at`` falls in: whole ``step_s`` periods since the Unix epoch."""
    invariant(at.tzinfo is not None, "payment-code time must be timezone-aware")
    return int(at.timestamp()) // step_s


def step_start(step: int, step_s: int) -> datetime:
    return datetime.fromtimestamp(step * step_s, UTC)


def otp(secret: bytes, step: int) -> str:
    """The 9-digit one-time password of ``step``."""
    invariant(step >= 0, "time steps start at the epoch")
    mac = hmac.new(secret, step.to_bytes(8, "big"), hashlib.sha256).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 8], "big") & TRUNCATION_MASK
    return f"{value % 10**OTP_DIGITS:0{OTP_DIGITS}d}"


def code(*, issuer_id: str, locator: int, secret: bytes, step: int) -> str:
    """The 24-digit code of a device at ``step``."""
    invariant(len(issuer_id) == ISSUER_DIGITS and issuer_id.isdigit(), "issuer id: 8 digits")
    invariant(0 <= locator < LOCATOR_SPACE, "a locator has 7 digits")
    return f"{issuer_id}{locator:0{LOCATOR_DIGITS}d}{otp(secret, step)}"


def split(text: str) -> tuple[str, int, str] | None:
    """``(issuer_id, locator, otp)`` of a code, or None when it is not 24 digits."""
    if len(text) != CODE_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    locator_end = ISSUER_DIGITS + LOCATOR_DIGITS
    return text[:ISSUER_DIGITS], int(text[ISSUER_DIGITS:locator_end]), text[locator_end:]


def accepted_steps(past_steps: int, future_steps: int) -> int:
    """How many codes of one device are accepted at any instant."""
    return past_steps + 1 + future_steps


def false_accept_probability(*, active_devices: int, accepted: int, issuer_known: bool) -> float:
    """The chance that a random 24-digit code is accepted at a given instant: of the 10^16
    consumer parts (10^24 codes when the issuer id is guessed too), ``active_devices x
    accepted`` are valid at that instant (one per device and accepted step; the locators
    differ, so no two coincide)."""
    space: int = 10 ** (LOCATOR_DIGITS + OTP_DIGITS) * (1 if issuer_known else 10**ISSUER_DIGITS)
    invariant(active_devices <= LOCATOR_SPACE, "more devices than locators")
    return float(active_devices * accepted / space)
