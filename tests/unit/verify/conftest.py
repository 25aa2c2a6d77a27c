from __future__ import annotations

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


@pytest.fixture
def mexc_vector_path() -> Path:
    return VECTORS / "mexc-2025-proof.json"
