"""The domain error tree. HTTP status mapping lives only in app.py (by ``status``)."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class DomainError(Exception):
    """A refusal a client can act on: a stable snake_case ``code``, a message, details."""

    code = "domain_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details


class InvalidAmount(DomainError):
    code = "invalid_amount"
    status = 422


class UnknownAsset(DomainError):
    code = "unknown_asset"
    status = 422


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    status = 422


class LimitExceeded(DomainError):
    code = "limit_exceeded"
    status = 422


class InvariantViolation(Exception):
    """A bug: something that must hold did not. Never shown to clients in detail."""


def invariant(condition: bool, message: str) -> None:
    """Assert what must hold. Unlike ``assert`` this survives ``python -O``."""
    if not condition:
        raise InvariantViolation(message)


def present(value: T | None, message: str) -> T:
    """``value``, which must not be None (an invariant that also narrows the type)."""
    if value is None:
        raise InvariantViolation(message)
    return value
