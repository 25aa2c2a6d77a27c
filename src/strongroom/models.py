"""Imports every domain's tables so that ``Base.metadata`` knows them all."""

from strongroom.identity.models import AuthToken, User
from strongroom.idempotency import IdempotencyKey
from strongroom.ledger.models import Account, Entry, Transfer

__all__ = ["Account", "AuthToken", "Entry", "IdempotencyKey", "Transfer", "User"]
