"""merge: the wave-3 branches (issues #12, #13, #14) were written side by side from 0030; this
joins them into one head. It changes no table.

Revision ID: 2026_12_06_0040
Revises:
    2026_12_06_0032,
    2026_12_06_0035,
    2026_12_06_0036,
    2026_12_06_0037
Create Date: 2026-12-06
"""

from __future__ import annotations

revision = "2026_12_06_0040"
down_revision = ("2026_12_06_0032", "2026_12_06_0035", "2026_12_06_0036", "2026_12_06_0037")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to do: the branches touch different tables (or different columns)."""


def downgrade() -> None:
    """Nothing to do."""
