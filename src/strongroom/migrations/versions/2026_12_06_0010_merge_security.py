"""merge: the four security-hardening branches of issue #10 (operator roles, account takeover,
rate limits, pending sign-ins) were written side by side from 0005; this joins them into one head.
It changes no table.

Revision ID: 2026_12_06_0010
Revises: 2026_12_06_0006, 2026_12_06_0007, 2026_12_06_0008, 2026_12_06_0009
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "2026_12_06_0010"
down_revision = ("2026_12_06_0006", "2026_12_06_0007", "2026_12_06_0008", "2026_12_06_0009")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to do: the branches touch different tables."""


def downgrade() -> None:
    """Nothing to do."""
