"""merge: the later wave-2 branches (withdrawals, merchants, settlement, portal, the #11 wiring,
privacy) were written side by side from 0020 (and 0022); this joins them into one
head. It changes no table.

Revision ID: 2026_12_06_0030
Revises: 2026_12_06_0021,
    2026_12_06_0023,
    2026_12_06_0024,
    2026_12_06_0025
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "2026_12_06_0030"
down_revision = ("2026_12_06_0021", "2026_12_06_0023", "2026_12_06_0024", "2026_12_06_0025")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to do: the branches touch different tables (or different columns)."""


def downgrade() -> None:
    """Nothing to do."""
