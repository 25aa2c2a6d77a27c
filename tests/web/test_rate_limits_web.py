"""Throttling in the web forms (R-SEC-9): the Lite app's and the console's sign-in and the Lite
sign-up count as the API does and say so in the form, translated, with 429 and ``Retry-After``;
nothing else is written. And the worker's sweep of ended windows, on both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db, worker
from strongroom.app import create_app
from strongroom.ratelimit import service as ratelimit
from strongroom.ratelimit.models import RateLimitBucket
from strongroom.settings import IdempotencySettings, RateLimitRule
from tests.api.test_rate_limits import limited

from .conftest import csrf_token, fingerprint, new_client, serving, web_user


@pytest.fixture
def throttled_url(pg_db: Engine) -> Iterator[str]:
    settings = limited(
        pg_db,
        login_per_address=RateLimitRule(limit=2, window_s=600),
        registration_per_address=RateLimitRule(limit=1, window_s=3600),
    )
    with serving(create_app(settings, pg_db)) as url:
        yield url


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return found.group(1).strip()


def _post_form(client: httpx.Client, path: str, form: dict[str, str]) -> httpx.Response:
    token = csrf_token(client.get(path).text)
    return client.post(path, data={"csrf_token": token, **form})


@pytest.mark.parametrize("part", ["/app", "/console"])
def test_sign_in_forms_are_throttled_per_address(
    throttled_url: str, pg_db: Engine, part: str
) -> None:
    user = web_user(pg_db, "Target")
    wrong = {"email": user.email, "password": "not-the-password-1"}
    with new_client(throttled_url) as browser:
        for _ in range(2):
            assert _post_form(browser, f"{part}/signin", wrong).status_code == 401
        before = fingerprint(pg_db)
        right = {"email": user.email, "password": user.password}
        refused = _post_form(browser, f"{part}/signin", right)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert re.fullmatch(
            r"Too many attempts: try again after .*20\d\d.*\.", _alert(refused.text)
        )
        assert "sr_session" not in browser.cookies
        assert fingerprint(pg_db) == before
        chinese = browser.get(f"{part}/signin", headers={"Accept-Language": "zh-HK"})
        token = csrf_token(chinese.text)
        again = browser.post(
            f"{part}/signin",
            data={"csrf_token": token, **right},
            headers={"Accept-Language": "zh-HK"},
        )
        assert again.status_code == 429 and _alert(again.text).startswith("嘗試次數過多")


def test_sign_up_is_throttled_per_address_and_writes_nothing(
    throttled_url: str, pg_db: Engine
) -> None:
    form = {"password": "a-long-password-1", "name": "New", "region": "HK"}
    with new_client(throttled_url) as browser:
        first = _post_form(browser, "/app/signup", {"email": "first@example.com", **form})
        assert first.status_code in (200, 303), first.text
        before = fingerprint(pg_db)
        refused = _post_form(browser, "/app/signup", {"email": "second@example.com", **form})
        assert refused.status_code == 429
        assert _alert(refused.text).startswith("Too many attempts: try again after")
        assert fingerprint(pg_db) == before


def _buckets(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(RateLimitBucket)).scalar_one()


def test_the_worker_deletes_ended_windows_in_bounded_batches(any_db: Engine) -> None:
    settings = limited(any_db, login_per_address=RateLimitRule(limit=5, window_s=60))
    factory = db.make_session_factory(any_db)
    now = db.utcnow()
    with db.unit_of_work(factory) as session:
        for number in range(5):
            checks = [ratelimit.Check("login_per_address", f"192.0.2.{number}")]
            ratelimit.count(session=session, checks=checks, settings=settings.rate_limits, now=now)
        checks = [ratelimit.Check("registration_per_address", "192.0.2.99")]  # a 1-hour window
        ratelimit.count(session=session, checks=checks, settings=settings.rate_limits, now=now)
    limits = settings.rate_limits.model_copy(update={"sweep_batch_max": 2})
    keys = IdempotencySettings()
    assert worker.sweep_once(factory, keys, limits).buckets_swept == 0  # no window ended yet
    later = now + timedelta(seconds=61)
    with db.unit_of_work(factory) as session:
        assert ratelimit.sweep(session=session, now=later, limit=2) == 2
    with db.unit_of_work(factory) as session:
        assert ratelimit.sweep(session=session, now=later, limit=2) == 2
    with db.unit_of_work(factory) as session:
        assert ratelimit.sweep(session=session, now=later, limit=2) == 1
        assert ratelimit.sweep(session=session, now=later, limit=2) == 0
    assert _buckets(any_db) == 1  # the hour-long window stays


def test_counts_are_exact_under_concurrency(pg_db: Engine) -> None:
    """Many threads, one key: exactly the limit is allowed (the upsert counts under the row's
    lock), and a refused count is kept."""
    from concurrent.futures import ThreadPoolExecutor

    settings = limited(pg_db, login_per_address=RateLimitRule(limit=7, window_s=60)).rate_limits
    limiter = ratelimit.RateLimiter(db.make_session_factory(pg_db), settings)

    def one(_: int) -> bool:
        with db.make_session_factory(pg_db)() as request_session:
            try:
                limiter.hit(
                    [ratelimit.Check("login_per_address", "192.0.2.1")],
                    request_session=request_session,
                )
            except ratelimit.RateLimited:
                return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = list(pool.map(one, range(20)))
    assert allowed.count(True) == 7
    with pg_db.connect() as connection:
        assert connection.execute(select(RateLimitBucket.hits)).scalar_one() == 20
