"""merge: the wave-2 branches (issues #11-#14: KYC, limits and T+N, FX, payment codes, bank
accounts, connectors, throughput) were written side by side from 0010; this joins them into one
head. It changes no table.

Revision ID: 2026_12_06_0020
Revises: 2026_12_06_0012,
    2026_12_06_0013,
    2026_12_06_0014,
    2026_12_06_0015,
    2026_12_06_0016,
    2026_12_06_0017,
    2026_12_06_0018,
    2026_12_06_0019
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "2026_12_06_0020"
down_revision = (
    "2026_12_06_0012",
    "2026_12_06_0013",
    "2026_12_06_0014",
    "2026_12_06_0015",
    "2026_12_06_0016",
    "2026_12_06_0017",
    "2026_12_06_0018",
    "2026_12_06_0019",
)
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to do: the branches touch different tables (or different columns)."""


def downgrade() -> None:
    """Nothing to do."""
