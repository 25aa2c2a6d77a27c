"""The roles inside a merchant (R-MERCH-1) and what each may do: one table, read by the API
for terminal keys and for people who work for the merchant alike (the merchant portal too).

| capability | owner | manager | cashier | finance |
|------------|:-----:|:-------:|:-------:|:-------:|
| charge     |   ✓   |    ✓    |    ✓    |         |
| qr         |   ✓   |    ✓    |    ✓    |         |
| read       |   ✓   |    ✓    |    ✓    |    ✓    |
| refund     |   ✓   |    ✓    |         |    ✓    |
| export     |   ✓   |    ✓    |         |    ✓    |
| settings   |   ✓   |    ✓    |         |         |
| payout     |   ✓   |         |         |    ✓    |

A cashier takes payments and sees them; money going back out (refunds) and bulk data
(exports) belong to the roles that answer for the books; paying money out of the merchant's
wallet to other bank accounts (batch payouts) to the owner and finance only."""

from __future__ import annotations

from typing import Final

from strongroom.errors import Forbidden, invariant

OWNER: Final = "owner"
MANAGER: Final = "manager"
CASHIER: Final = "cashier"
FINANCE: Final = "finance"
ROLES: Final = (OWNER, MANAGER, CASHIER, FINANCE)

TABLE: Final[dict[str, frozenset[str]]] = {
    "charge": frozenset({OWNER, MANAGER, CASHIER}),
    "qr": frozenset({OWNER, MANAGER, CASHIER}),
    "read": frozenset(ROLES),
    "refund": frozenset({OWNER, MANAGER, FINANCE}),
    "export": frozenset({OWNER, MANAGER, FINANCE}),
    "settings": frozenset({OWNER, MANAGER}),
    "payout": frozenset({OWNER, FINANCE}),
}


def require(role: str, capability: str) -> None:
    """``merchant_role_forbidden`` (403) unless ``role`` holds ``capability``."""
    invariant(capability in TABLE, f"unknown merchant capability {capability!r}")
    if role not in TABLE[capability]:
        raise Forbidden(
            f"a merchant {role} may not do this",
            code="merchant_role_forbidden",
            capability=capability,
            role=role,
            roles=sorted(TABLE[capability]),
        )
