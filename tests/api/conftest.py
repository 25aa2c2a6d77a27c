from __future__ import annotations

import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pyotp
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.app import create_app
from strongroom.identity import service as identity
from strongroom.notify.models import OutboxEmail
from strongroom.settings import LimitsSettings, Settings

PASSWORD = "a-long-password-1"


def make_settings(engine: Engine) -> Settings:
    """The tests' settings: environment ``test`` (the sandbox channel on, relaxed cookies on
    loopback http), no background worker, rate limits off (every test signs in from one
    address; tests/api/test_rate_limits.py turns them on)."""
    return Settings(
        env="test",
        database_url=engine.url.render_as_string(hide_password=False),
        run_worker=False,
        secret_key="test-secret-key-0123456789",
        rate_limits_enabled=False,
        limits=ROOMY_LIMITS,
    )


ROOMY_LIMITS = LimitsSettings(
    tiers={
        tier: {
            "per_transaction": None,
            "per_day": None,
            "per_year": None,
            "max_balance": None,
            "withdrawals_per_day": None,
            "crypto_withdrawals_24h_btc": None,
        }
        for tier in ("unverified", "primary", "advanced", "institutional")
    },
    tn_hours=0,
    tn_high_risk_hours=0,
)
"""No tier limits and no T+N holds on sandbox crypto top-ups for the tests of other features
(tests/limits use SPEC's table; a test of T+N elsewhere plants its lots with ``ledger.lock``)."""


def production_settings(engine: Engine) -> Settings:
    """Settings that production accepts (``check_production``): long random secrets, no
    sandbox, no demo inbox, rate limits on."""
    return Settings(
        env="production",
        database_url=engine.url.render_as_string(hide_password=False),
        run_worker=False,
        secret_key=secrets.token_urlsafe(48),
        vault_key=secrets.token_urlsafe(48),
    )


@pytest.fixture
def app(pg_db: Engine) -> FastAPI:
    return create_app(make_settings(pg_db), pg_db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@dataclass
class Caller:
    client: TestClient | httpx.Client
    token: str
    user_id: str
    email: str
    totp_secret: str | None = None

    def headers(self, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def post(self, path: str, body: object, key: str | None = "auto") -> httpx.Response:
        if key == "auto":
            key = uuid.uuid4().hex
        return self.client.post(path, json=body, headers=self.headers(key))

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.client.get(path, headers=self.headers(), params=params)  # type: ignore[arg-type]

    def topup(self, amount: str, asset: str = "HKD") -> httpx.Response:
        response = self.post("/v1/topups", {"asset": asset, "amount": amount, "channel": "sandbox"})
        assert response.status_code == 201, response.text
        return response

    def balance(self, asset: str = "HKD") -> dict[str, object]:
        for row in self.get("/v1/balances").json()["balances"]:
            if row["asset"] == asset:
                return row  # type: ignore[no-any-return]
        return {"asset": asset, "total": None}


EMAILED_TOKEN = re.compile(r"#token=([A-Za-z0-9_-]+)")


def emailed_token(factory: sessionmaker[Session], address: str, template_id: str) -> str:
    """The token of the newest email of ``template_id`` to ``address`` in the outbox: what
    the user reads in the link (``account.verify_email``, ``security.password_reset``)."""
    with factory() as session:
        body = session.scalars(
            select(OutboxEmail.body_text)
            .where(OutboxEmail.to_address == address, OutboxEmail.template_id == template_id)
            .order_by(OutboxEmail.id.desc())
        ).first()
    assert body is not None, f"no {template_id} email to {address}"
    found = EMAILED_TOKEN.search(body)
    assert found is not None, body
    return found.group(1)


def session_factory(
    client: TestClient | httpx.Client, engine: Engine | None
) -> sessionmaker[Session]:
    """The database behind ``client``: its app's, or ``engine``'s for a live server."""
    if engine is not None:
        return db.make_session_factory(engine)
    app = getattr(client, "app", None)
    assert app is not None, "a client of a live server: pass engine= to read its outbox"
    factory: sessionmaker[Session] = app.state.session_factory
    return factory


def signup(
    client: TestClient | httpx.Client,
    name: str = "Alice",
    region: str = "HK",
    *,
    engine: Engine | None = None,
    verify: bool = True,
) -> Caller:
    """A user registered through the API, the email verified as its owner does (the token
    of the emailed link, ``POST /v1/auth/verify-email``) unless ``verify`` is False, then
    signed in."""
    email = f"{name.lower().replace(' ', '.')}.{uuid.uuid4().hex[:6]}@example.com"
    response = client.post(
        "/v1/auth/register",
        json={"email": email, "password": PASSWORD, "name": name, "region": region},
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["user_id"]
    if verify:
        token = emailed_token(session_factory(client, engine), email, "account.verify_email")
        verified = client.post("/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 204, verified.text
    login = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Caller(client, login.json()["token"], user_id, email)


def operator(
    client: TestClient | httpx.Client, engine: Engine, role: str = "admin", two_factor: bool = True
) -> Caller:
    """An operator, created as `strongroom admin create-operator --with-totp-secret` does, then
    signed in with a current TOTP code (operator endpoints need 2FA on)."""
    email = f"op.{uuid.uuid4().hex[:6]}@example.com"
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = identity.register(
            session=session,
            email=email,
            password=PASSWORD,
            name="Operator",
            region="HK",
            settings=make_settings(engine).auth,
            operator_role=role,
        )
        enrolled = (
            identity.enrol_totp_now(session=session, user=user, settings=make_settings(engine).auth)
            if two_factor
            else None
        )
    body = {"email": email, "password": PASSWORD}
    if enrolled is not None:
        body["otp"] = pyotp.TOTP(enrolled.secret).now()
    login = client.post("/v1/auth/login", json=body)
    assert login.status_code == 200, login.text
    caller = Caller(client, login.json()["token"], user.id, email)
    caller.totp_secret = enrolled.secret if enrolled is not None else None
    return caller


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The app served by a real uvicorn on a loopback port, for concurrent clients."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
