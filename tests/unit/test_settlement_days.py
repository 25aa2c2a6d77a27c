"""Business days for settlement (R-MERCH-3): a calendar day in the operator's zone, the worker's
day after the cut-off, an unknown zone refused by the settings."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from strongroom.settings import SettlementSettings
from strongroom.settlement.service import day_bounds, due_day, local_day


def test_a_hong_kong_day_in_utc() -> None:
    start, end = day_bounds(date(2026, 12, 6), "Asia/Hong_Kong")
    assert start == datetime(2026, 12, 5, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 6, 16, 0, tzinfo=UTC)
    assert local_day(datetime(2026, 12, 5, 16, 0, tzinfo=UTC), "Asia/Hong_Kong") == date(
        2026, 12, 6
    )
    assert local_day(datetime(2026, 12, 5, 15, 59, tzinfo=UTC), "Asia/Hong_Kong") == date(
        2026, 12, 5
    )


def test_the_worker_settles_yesterday_after_the_cut_off() -> None:
    rules = SettlementSettings(cutoff_hour=2)
    assert due_day(datetime(2026, 12, 5, 17, 59, tzinfo=UTC), rules) is None  # 01:59 in HK
    assert due_day(datetime(2026, 12, 5, 18, 0, tzinfo=UTC), rules) == date(2026, 12, 5)


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ValidationError):
        SettlementSettings(timezone="Mars/Olympus")
