"""``db.pg_array``: the array literals the group commit passes instead of Python lists (issue
#14) read back on PostgreSQL as exactly the values given, whatever the text holds."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from strongroom.db import pg_array

TEXTS = st.lists(
    st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))),
    max_size=12,
)
"""Any text PostgreSQL can hold (UTF-8, no NUL), quotes, backslashes, braces, commas, blanks and the
word NULL included, and NULLs."""


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=TEXTS)
def test_text_arrays_read_back_as_given(pg_db: Engine, values: list[str | None]) -> None:
    with pg_db.connect() as conn:
        found = conn.scalar(text("SELECT CAST(:a AS text[])"), {"a": pg_array(values)})
    assert found == values


@pytest.mark.parametrize(
    "values",
    [["NULL", "null", " x ", "", '"', "\\", "{}", ",", 'a"b\\c', "é中"], [None, "NULL"], []],
)
def test_the_hard_texts(pg_db: Engine, values: list[str | None]) -> None:
    with pg_db.connect() as conn:
        found = conn.scalar(text("SELECT CAST(:a AS text[])"), {"a": pg_array(values)})
    assert found == values


def test_numbers_flags_and_timestamps(pg_db: Engine) -> None:
    at = datetime(2026, 12, 6, 23, 59, 59, 123456, tzinfo=UTC)
    big = 2**127 - 1
    with pg_db.connect() as conn:
        row = conn.execute(
            text(
                "SELECT CAST(:i AS bigint[]), CAST(:n AS numeric[]), CAST(:b AS boolean[]),"
                " CAST(:t AS timestamptz[])"
            ),
            {
                "i": pg_array([1, -2, None, 2**62]),
                "n": pg_array([big, Decimal("-5"), 0]),
                "b": pg_array([True, False, None]),
                "t": pg_array([at, None]),
            },
        ).one()
    assert row[0] == [1, -2, None, 2**62]
    assert row[1] == [big, -5, 0]
    assert row[2] == [True, False, None]
    assert row[3] == [at, None]


def test_what_it_cannot_write_is_refused() -> None:
    with pytest.raises(TypeError):
        pg_array([1.5])
    with pytest.raises(Exception, match="timezone-aware"):
        pg_array([datetime(2026, 1, 1)])
