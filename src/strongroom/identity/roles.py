"""The operator roles' one table (R-SEC-10): which roles hold each operator capability.

Both the operator API (``api.OperatorGuard(capability)`` on every ``/v1/admin/...`` route a
person calls) and the console (``web.console.access.ConsoleGuard(capability)`` on every page,
its navigation, the parts of a page) read ``TABLE``; nothing else decides who may do what.

| capability          | admin | support | finance | kyc_reviewer | what it opens                  |
|---------------------|:-----:|:-------:|:-------:|:------------:|--------------------------------|
| dashboard           |   ✓   |    ✓    |    ✓    |      ✓       | the console's dashboard        |
| users               |   ✓   |    ✓    |    ✓    |      ✓       | find users, a user's profile   |
| balances            |   ✓   |         |    ✓    |              | balances, accounts, statements |
| security_events     |   ✓   |    ✓    |         |      ✓       | a user's security events       |
| audit               |   ✓   |         |         |              | the audit log                  |
| outbox              |   ✓   |    ✓    |         |              | the email outbox (no bodies)   |
| outbox.retry        |   ✓   |         |         |              | retry a failed email           |
| inbox               |   ✓   |    ✓    |         |              | the demo's inbox               |
| adjustments         |   ✓   |         |    ✓    |              | list and read adjustments      |
| adjustments.propose |   ✓   |         |    ✓    |              | propose one (the maker)        |
| adjustments.approve |   ✓   |         |    ✓    |              | approve or reject (checker)    |
| fx.rates            |   ✓   |         |    ✓    |              | FX rates: read, set, delete    |
| kyc                 |   ✓   |         |         |      ✓       | KYC queue, documents, decide   |
| ledger.write        |       |         |         |              | raw ledger batches, accounts   |
| webhooks            |   ✓   |         |    ✓    |              | connectors' webhook deliveries |
| reconciliation      |   ✓   |         |    ✓    |              | ledger vs connector records    |
| payouts             |   ✓   |         |    ✓    |              | pending payouts (withdrawals)  |
| merchants           |   ✓   |    ✓    |    ✓    |              | read merchants                 |
| merchants.manage    |   ✓   |         |         |              | onboard, keys, members         |

Why: only finance and admin see money (SPEC R-SEC-10: balances and statements); support
answers users (who they are, what happened to their account, did the email go out); a KYC
reviewer checks identities (the KYC queue, its documents, approve or reject: ``kyc``) and so
sees sign-in and security events; the audit log records what
every operator did, so only admins read it. Nobody moves money by hand alone: an adjustment is
proposed by one operator and approved by another (``strongroom.adjustments``). The raw ledger
writes belong to no role: they take a service key with the ``ledger`` scope (``X-Api-Key``,
``identity.api_keys``), because they serve integrations, not people.
"""

from __future__ import annotations

from typing import Final

from strongroom.errors import Forbidden, invariant

ADMIN: Final = "admin"
SUPPORT: Final = "support"
FINANCE: Final = "finance"
KYC_REVIEWER: Final = "kyc_reviewer"
ROLES: Final = (ADMIN, KYC_REVIEWER, FINANCE, SUPPORT)
"""Every operator role (the order ``identity.service.OPERATOR_ROLES`` has always had)."""

EVERY_ROLE: Final = frozenset(ROLES)
MONEY: Final = frozenset({ADMIN, FINANCE})
NOBODY: Final[frozenset[str]] = frozenset()

TABLE: Final[dict[str, frozenset[str]]] = {
    "dashboard": EVERY_ROLE,
    "users": EVERY_ROLE,
    "balances": MONEY,
    "security_events": frozenset({ADMIN, SUPPORT, KYC_REVIEWER}),
    "audit": frozenset({ADMIN}),
    "outbox": frozenset({ADMIN, SUPPORT}),
    "outbox.retry": frozenset({ADMIN}),
    "inbox": frozenset({ADMIN, SUPPORT}),
    "adjustments": MONEY,
    "adjustments.propose": MONEY,
    "adjustments.approve": MONEY,
    "fx.rates": MONEY,
    "kyc": frozenset({ADMIN, KYC_REVIEWER}),
    "ledger.write": NOBODY,  # service keys with the ledger scope only
    "webhooks": MONEY,
    "reconciliation": MONEY,
    "payouts": MONEY,
    "merchants": frozenset({ADMIN, SUPPORT, FINANCE}),
    "merchants.manage": frozenset({ADMIN}),  # where a merchant's money goes, who acts for it
}
"""Capability → the operator roles that hold it (the table of the module docstring)."""


def holders(capability: str) -> frozenset[str]:
    """The roles that hold ``capability`` (a key of ``TABLE``; anything else is a bug)."""
    invariant(capability in TABLE, f"unknown operator capability {capability!r}")
    return TABLE[capability]


def may(role: str | None, capability: str) -> bool:
    """Whether an operator of ``role`` holds ``capability``."""
    return role is not None and role in holders(capability)


def require(role: str | None, capability: str) -> None:
    """``forbidden`` (403) unless ``role`` holds ``capability``; the details name the roles
    that do, so an operator knows whom to ask."""
    if not may(role, capability):
        raise Forbidden(
            "your operator role may not do this",
            code="forbidden",
            capability=capability,
            roles=sorted(holders(capability)),
        )
