"""Password policy and hashing (R-SEC-1): Argon2id, at least 10 characters, not common."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from strongroom.identity.errors import WeakPassword
from strongroom.settings import AuthSettings

COMMON_PASSWORDS_FILE = "common-passwords.txt"
_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
DUMMY_HASH = _hasher.hash("strongroom-timing-equaliser")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The bundled list of the 10,000 most common passwords, lower case (see data/README.md)."""
    text = (
        resources.files("strongroom")
        .joinpath("data", COMMON_PASSWORDS_FILE)
        .read_text(encoding="utf-8")
    )
    words = frozenset(line.strip() for line in text.splitlines() if line.strip())
    if len(words) < 1000:
        raise RuntimeError(f"the bundled {COMMON_PASSWORDS_FILE} is missing or truncated")
    return words


def is_common(candidate: str) -> bool:
    return candidate.strip().lower() in common_passwords()


def check_policy(password: str, settings: AuthSettings) -> None:
    """Refuse a new password with ``weak_password`` and the reason in ``details``."""
    if len(password) < settings.password_min_chars:
        raise WeakPassword(
            f"password must be at least {settings.password_min_chars} characters",
            reason="too_short",
            min_chars=settings.password_min_chars,
        )
    if len(password) > settings.password_max_chars:
        raise WeakPassword(
            "password is too long", reason="too_long", max_chars=settings.password_max_chars
        )
    if is_common(password):
        raise WeakPassword(
            "this password is one of the most common ones: choose another", reason="common_password"
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verifier(password: str) -> Callable[[str], bool]:
    """``verify`` of one password against stored hashes, Argon2 run once per hash: for kept
    steps that run again after a refusal's rollback (``db.keep``)."""
    verified: dict[str, bool] = {}

    def matches(password_hash: str) -> bool:
        if password_hash not in verified:
            verified[password_hash] = verify(password_hash, password)
        return verified[password_hash]

    return matches


def verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
