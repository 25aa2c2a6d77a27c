"""Pure TOTP and recovery-code helpers (RFC 6238 through pyotp; no database)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import io
import secrets
from datetime import datetime

import pyotp
import segno

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud safely
RECOVERY_GROUPS = 4
RECOVERY_GROUP_CHARS = 4  # 16 characters of 31: about 79 bits, safe to store as SHA-256


class Match(enum.Enum):
    ACCEPTED = "accepted"
    REUSED = "reused"
    WRONG = "wrong"


def new_secret() -> str:
    """A random 160-bit secret, base32 (as RFC 4226 recommends)."""
    return pyotp.random_base32(length=32)


def time_step(now: datetime, step_s: int = STEP_S) -> int:
    return int(now.timestamp()) // step_s


def code_at(secret: str, step: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code of one time step (``digest``: sha1, sha256 or sha512)."""
    return pyotp.TOTP(secret, digits=digits, digest=getattr(hashlib, digest)).generate_otp(step)


def check(
    secret: str, code: str, *, now: datetime, last_used_step: int, drift_steps: int = DRIFT_STEPS
) -> tuple[Match, int | None]:
    """Whether ``code`` is valid now (one step of drift either way) and not used before.

    A code is bound to its time step; a step at or before ``last_used_step`` is never accepted
    again, so a code (or an older one) cannot be replayed."""
    candidate = code.strip()
    if len(candidate) != DIGITS or not candidate.isdigit():
        return Match.WRONG, None
    current = time_step(now)
    for step in sorted(
        range(current - drift_steps, current + drift_steps + 1), key=lambda s: abs(s - current)
    ):
        if hmac.compare_digest(code_at(secret, step), candidate):
            return (Match.ACCEPTED, step) if step > last_used_step else (Match.REUSED, step)
    return Match.WRONG, None


def looks_like_totp(code: str) -> bool:
    stripped = code.strip().replace(" ", "")
    return len(stripped) == DIGITS and stripped.isdigit()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The otpauth URI as a standalone SVG QR code."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, border=4)
    return buffer.getvalue().decode("utf-8")


def new_recovery_codes(count: int) -> list[str]:
    """``count`` single-use codes like ``k7qm-z3xw-pt9a-hn4c``."""
    return [
        "-".join(
            "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_GROUP_CHARS))
            for _ in range(RECOVERY_GROUPS)
        )
        for _ in range(count)
    ]


def recovery_hash(code: str) -> str:
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()
