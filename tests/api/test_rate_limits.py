"""Throttling (R-SEC-9, issue #10 finding 4) over the API: what an attacker gets (429
``rate_limited`` with ``Retry-After``, nothing written, no Argon2 hash), and what honest people
still get. Time is moved with the limiter's clock, not waited for; other addresses are
TestClients with another ``client`` address."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity import passwords
from strongroom.identity.models import LoginThrottle
from strongroom.ratelimit.models import RateLimitBucket
from strongroom.settings import RateLimitRule, RateLimitSettings, Settings
from tests.api.conftest import PASSWORD, make_settings
from tests.web.conftest import fingerprint, web_user

ATTACKER = ("203.0.113.66", 40000)
OWNER = ("198.51.100.7", 50000)
WRONG = "not-the-password-1"
CONFIRM = {"otp": "000000", "password": PASSWORD}  # a wrong code (with step-up's password)


def limited(engine: Engine, **rules: RateLimitRule) -> Settings:
    """The tests' settings with the rate limits on: the defaults, and ``rules`` instead."""
    settings = make_settings(engine)
    limits = RateLimitSettings(enabled=True, **rules)  # type: ignore[arg-type]
    return settings.model_copy(update={"rate_limits": limits, "rate_limits_enabled": None})


class Clock:
    """The limiter's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = db.utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def app_with(settings: Settings, engine: Engine) -> tuple[FastAPI, Clock]:
    app = create_app(settings, engine)
    clock = Clock()
    app.state.rate_limiter.clock = clock
    return app, clock


@pytest.fixture
def argon2_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times Argon2 verified a password (the real function, counted)."""
    calls: list[int] = []
    real = passwords.verify

    def counted(password_hash: str, password: str) -> bool:
        calls.append(1)
        return real(password_hash, password)

    monkeypatch.setattr(passwords, "verify", counted)
    return calls


def _client(app: FastAPI, address: tuple[str, int]) -> TestClient:
    return TestClient(app, client=address)


def _login(client: TestClient, email: str, password: str = WRONG) -> tuple[int, dict[str, object]]:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    return response.status_code, response.json() if response.content else {}


def test_thirty_accounts_from_one_address_are_throttled_after_the_address_limit(
    pg_db: Engine, argon2_runs: list[int]
) -> None:
    """Password spraying: one wrong password on each of 30 accounts from one address. The first
    ``login_per_address.limit`` are answered (401), the rest get 429 ``rate_limited`` without an
    Argon2 hash and without writing anything; no account is locked by them."""
    settings = limited(pg_db)
    limit = settings.rate_limits.login_per_address.limit
    assert limit < 30
    users = [web_user(pg_db, f"Victim{n}") for n in range(30)]
    app, _clock = app_with(settings, pg_db)
    with _client(app, ATTACKER) as attacker:
        for user in users[:limit]:
            assert _login(attacker, user.email)[0] == 401
        assert len(argon2_runs) == limit
        before = fingerprint(pg_db)
        throttles_before = _throttle_rows(pg_db)
        for user in users[limit:]:
            response = attacker.post(
                "/v1/auth/login", json={"email": user.email, "password": WRONG}
            )
            assert response.status_code == 429
            error = response.json()["error"]
            assert error["code"] == "rate_limited"
            assert error["details"]["rule"] == "login_per_address"
            retry_after_s = error["details"]["retry_after_s"]
            assert 0 < retry_after_s <= settings.rate_limits.login_per_address.window_s
            assert response.headers["retry-after"] == str(retry_after_s)
        assert len(argon2_runs) == limit  # no hash for a throttled request
        assert fingerprint(pg_db) == before  # not a row more anywhere
        assert _throttle_rows(pg_db) == throttles_before  # no failure counted for an account


def _throttle_rows(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(select(LoginThrottle.email, LoginThrottle.failures))
        return sorted((row.email, row.failures) for row in rows)


def test_a_throttled_account_signs_in_from_another_address_after_its_window(
    pg_db: Engine,
) -> None:
    """Guesses at one account from one address: after ``login_per_account.limit`` (set below
    the lockout, so the account is throttled, not locked) even the right password is refused
    for everyone until the window ends; then its owner, from another address, signs in. The
    attacker's address stays throttled by its own, longer window."""
    settings = limited(
        pg_db,
        login_per_account=RateLimitRule(limit=3, window_s=60),
        login_per_address=RateLimitRule(limit=4, window_s=3600),
    )
    assert settings.auth.lockout_threshold > 3
    victim = web_user(pg_db, "Victim")
    app, clock = app_with(settings, pg_db)
    with _client(app, ATTACKER) as attacker, _client(app, OWNER) as owner:
        assert [_login(attacker, victim.email)[0] for _ in range(3)] == [401, 401, 401]
        status, body = _login(attacker, victim.email)
        assert status == 429 and body["error"]["details"]["rule"] == "login_per_account"
        status, body = _login(owner, victim.email, PASSWORD)  # the right one, too early
        assert status == 429 and body["error"]["details"]["rule"] == "login_per_account"
        clock.advance(61)
        status, body = _login(owner, victim.email, PASSWORD)
        assert status == 200 and body["token"]
        # the attacker's 4 attempts (the refused one too) spent the address's limit
        status, body = _login(attacker, f"other.{uuid.uuid4().hex[:6]}@example.com")
        assert status == 429 and body["error"]["details"]["rule"] == "login_per_address"


def test_sign_ins_that_succeed_give_their_count_back(pg_db: Engine) -> None:
    """An office behind one address: many right passwords never use up the limit, which is left
    for wrong guesses."""
    settings = limited(pg_db, login_per_address=RateLimitRule(limit=3, window_s=3600))
    users = [web_user(pg_db, f"Staff{n}") for n in range(6)]
    app, _clock = app_with(settings, pg_db)
    with _client(app, OWNER) as office:
        assert [_login(office, user.email, PASSWORD)[0] for user in users] == [200] * 6
        assert [_login(office, user.email)[0] for user in users[:4]] == [401, 401, 401, 429]


def test_registration_is_throttled_per_address_and_writes_nothing(pg_db: Engine) -> None:
    settings = limited(pg_db, registration_per_address=RateLimitRule(limit=2, window_s=3600))
    app, clock = app_with(settings, pg_db)

    def register(client: TestClient) -> int:
        email = f"new.{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": PASSWORD, "name": "New", "region": "HK"}
        return client.post("/v1/auth/register", json=body).status_code

    with _client(app, ATTACKER) as attacker, _client(app, OWNER) as other:
        assert [register(attacker), register(attacker)] == [201, 201]
        before = fingerprint(pg_db)
        response = attacker.post(
            "/v1/auth/register",
            json={"email": "x.y@example.com", "password": PASSWORD, "name": "X", "region": "HK"},
        )
        assert response.status_code == 429
        assert response.json()["error"]["details"]["rule"] == "registration_per_address"
        assert fingerprint(pg_db) == before
        assert register(other) == 201  # another address is not affected
        clock.advance(3601)
        assert register(attacker) == 201


def test_password_reset_is_throttled_per_address_and_per_account(pg_db: Engine) -> None:
    settings = limited(
        pg_db,
        password_reset_per_address=RateLimitRule(limit=3, window_s=3600),
        password_reset_per_account=RateLimitRule(limit=2, window_s=3600),
    )
    victim = web_user(pg_db, "Victim")
    app, _clock = app_with(settings, pg_db)

    def ask(client: TestClient, email: str) -> httpx.Response:
        return client.post("/v1/auth/password-reset", json={"email": email})

    with _client(app, ATTACKER) as attacker, _client(app, OWNER) as other:
        assert [ask(attacker, victim.email).status_code for _ in range(2)] == [202, 202]
        refused = ask(other, victim.email)  # another address: the account's limit is spent
        assert refused.status_code == 429
        assert refused.json()["error"]["details"]["rule"] == "password_reset_per_account"
        assert ask(attacker, "someone.else@example.com").status_code == 202
        refused = ask(attacker, "a.third@example.com")  # the address's limit is spent
        assert refused.json()["error"]["details"]["rule"] == "password_reset_per_address"
        confirm = attacker.post(
            "/v1/auth/password-reset/confirm",
            json={"token": "x" * 32, "new_password": "another-long-password-2"},
        )
        assert confirm.status_code == 429


def test_two_factor_codes_are_throttled_per_account(pg_db: Engine) -> None:
    """Sign-in with a 2FA code counts against the 2FA rules too: guesses at one account's code
    from many addresses stop at ``two_factor_per_account``."""
    settings = limited(pg_db, two_factor_per_account=RateLimitRule(limit=2, window_s=900))
    user = web_user(pg_db, "Guarded", two_factor=True)
    app, _clock = app_with(settings, pg_db)
    statuses = []
    for number in range(3):
        with _client(app, (f"203.0.113.{number + 1}", 40000)) as client:
            response = client.post(
                "/v1/auth/login", json={"email": user.email, "password": WRONG, "otp": "000000"}
            )
            statuses.append((response.status_code, response.json()["error"]["code"]))
    assert statuses[:2] == [(401, "invalid_credentials")] * 2
    assert statuses[2] == (429, "rate_limited")


def test_limits_off_count_nothing(pg_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """``STRONGROOM_RATE_LIMITS_ENABLED=false`` (load tests, benchmarks): no 429 of ours and no
    bucket written; sign-in's lockout (R-SEC-2) still holds."""
    monkeypatch.setenv("STRONGROOM_RATE_LIMITS_ENABLED", "false")
    settings = Settings(
        env="test",
        database_url=pg_db.url.render_as_string(hide_password=False),
        run_worker=False,
        secret_key="test-secret-key-0123456789",
    )
    assert settings.rate_limits.enabled is False
    app, _clock = app_with(settings, pg_db)
    with _client(app, ATTACKER) as attacker:
        codes = [_login(attacker, f"u{n}@example.com")[1]["error"] for n in range(15)]
    assert {error["code"] for error in codes} == {"invalid_credentials"}  # type: ignore[index]
    assert _buckets(pg_db) == 0


def test_the_nested_switch_and_partial_rules_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRONGROOM_RATE_LIMITS__ENABLED", "false")
    monkeypatch.setenv("STRONGROOM_RATE_LIMITS__LOGIN_PER_ADDRESS__LIMIT", "3")
    settings = Settings(env="test")
    assert settings.rate_limits.enabled is False
    # a rule set in part keeps the rest of its own default
    assert settings.rate_limits.login_per_address == RateLimitRule(limit=3, window_s=15 * 60)
    monkeypatch.setenv("STRONGROOM_RATE_LIMITS_ENABLED", "true")  # the flat name decides
    assert Settings(env="test").rate_limits.enabled is True


def _buckets(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(RateLimitBucket)).scalar_one()


@pytest.fixture
def sqlite_app(sqlite_db: Engine) -> Iterator[tuple[FastAPI, Clock, Engine]]:
    app, clock = app_with(
        limited(sqlite_db, two_factor_per_account=RateLimitRule(limit=1, window_s=60)), sqlite_db
    )
    yield app, clock, sqlite_db


def test_sqlite_counts_before_and_inside_a_request_without_waiting_on_itself(
    sqlite_app: tuple[FastAPI, Clock, Engine],
) -> None:
    """On SQLite (one writer): an anonymous sign-in counts in its own transaction; a signed-in
    2FA step, whose request has read already, counts inside its unit of work (``db.keep``) and
    its count stays when it is refused."""
    app, _clock, engine = sqlite_app
    user = web_user(engine, "Solo")
    with _client(app, OWNER) as client:
        token = client.post(
            "/v1/auth/login", json={"email": user.email, "password": PASSWORD}
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        first = client.post("/v1/me/2fa/confirm", json=CONFIRM, headers=headers)
        assert first.status_code != 429
        second = client.post("/v1/me/2fa/confirm", json=CONFIRM, headers=headers)
        assert second.status_code == 429, second.text
        assert second.json()["error"]["details"]["rule"] == "two_factor_per_account"
    assert _buckets(engine) >= 1


def test_verification_resend_is_throttled_per_address(pg_db: Engine) -> None:
    """A signed-in user asking for link after link from one address gets 429 once the address
    limit is spent, before the service's own hourly cap; nothing is sent for it."""
    settings = limited(pg_db, verification_resend_per_address=RateLimitRule(limit=1, window_s=60))
    app, clock = app_with(settings, pg_db)
    from tests.api.conftest import signup

    with _client(app, ATTACKER) as client:
        caller = signup(client, "Resend", verify=False)
        first = client.post("/v1/me/verify-email/resend", headers=caller.headers())
        assert first.status_code == 202, first.text
        before = fingerprint(pg_db)
        second = client.post("/v1/me/verify-email/resend", headers=caller.headers())
        assert second.status_code == 429, second.text
        assert second.json()["error"]["code"] == "rate_limited"
        assert int(second.headers["Retry-After"]) > 0
        assert {k: v for k, v in fingerprint(pg_db).items() if k != "rate_limit_buckets"} == {
            k: v for k, v in before.items() if k != "rate_limit_buckets"
        }
        clock.advance(61)
        assert (
            client.post("/v1/me/verify-email/resend", headers=caller.headers()).status_code == 202
        )
