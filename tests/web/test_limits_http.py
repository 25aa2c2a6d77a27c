"""The Lite top-up form over the tier limits (R-LIMIT-1), in both languages: the refusal says
which limit and what is left, what was typed is kept, and nothing is written. The app runs
with SPEC's tier table here (other web tests have none)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape

import httpx
import pytest
from sqlalchemy.engine import Engine

from strongroom.app import create_app
from strongroom.settings import LimitsSettings
from tests.api.conftest import make_settings
from tests.web.conftest import (
    csrf_token,
    fingerprint,
    new_client,
    sandbox_topup,
    serving,
    web_sign_in,
    web_user,
)


@pytest.fixture
def http(pg_db: Engine) -> Iterator[httpx.Client]:
    settings = make_settings(pg_db).model_copy(update={"limits": LimitsSettings()})
    with serving(create_app(settings, pg_db)) as url, new_client(url) as client:
        yield client


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert"[^>]*>(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def _top_up(http: httpx.Client, amount: str) -> httpx.Response:
    page = http.get("/app/topup").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key is not None
    return http.post(
        "/app/topup",
        data={
            "csrf_token": csrf_token(page),
            "idempotency_key": key.group(1),
            "asset": "HKD",
            "amount": amount,
        },
    )


@pytest.mark.parametrize(
    ("language", "per_transaction", "day"),
    [
        (
            "en",
            "One transaction may be at most 2,000.00 HKD at your verification level.",
            "This is over your limit for 24 hours: 460.00 HKD left. More is allowed from ",
        ),
        (
            "zh_Hant",
            "以你的驗證級別，每筆交易最多 2,000.00 HKD。",
            "這超出你 24 小時內的限額：尚餘 460.00 HKD。 由 ",
        ),
    ],
)
def test_a_top_up_over_the_tier_limits_is_refused_in_words(
    http: httpx.Client, pg_db: Engine, language: str, per_transaction: str, day: str
) -> None:
    user = web_user(pg_db)
    web_sign_in(http, user)
    http.cookies.set("lang", language)
    before = fingerprint(pg_db)
    refused = _top_up(http, "2000.01")
    assert refused.status_code == 422
    assert _alert(refused.text) == per_transaction
    assert 'value="2000.01"' in refused.text
    assert fingerprint(pg_db) == before
    sandbox_topup(pg_db, user.email, "2000.00")
    sandbox_topup(pg_db, user.email, "500.00", "CNY")  # 540 HKD
    # 2,540 HKD topped up today: 460 left in the day (and in the max balance, checked after)
    before = fingerprint(pg_db)
    refused = _top_up(http, "600.00")
    assert refused.status_code == 422
    assert _alert(refused.text).startswith(day)
    assert fingerprint(pg_db) == before
