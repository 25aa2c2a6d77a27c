"""No secret reaches the logs (issue #10): a real uvicorn with its access log on serves sign-up
(with the emailed verification link), sign-in with 2FA, a password reset with its emailed
token, a top-up and a transfer, and failing requests (a wrong password, malformed JSON, an
unexpected database error that reaches the app's error handler), and the outbox worker fails
to deliver the emails. Every record of every logger (``strongroom.*``, ``uvicorn.access``,
``uvicorn.error``, SQLAlchemy's), with its traceback, is then searched for the emails, the
passwords, the bearer tokens, the TOTP seed and codes, the recovery codes and the reset and
verification tokens: none may appear.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.notify import delivery
from strongroom.notify.models import OutboxEmail
from strongroom.settings import MailSettings, Settings
from tests.api.conftest import _free_port

PASSWORD = "a-long-password-1"
NEW_PASSWORD = "another-long-password-2"
OTHER_SIDE = ("mail.log",)
"""Loggers of the test's own mail server (aiosmtpd), which stands for the recipient's: not ours."""
LINK_TOKEN = re.compile(r"#token=([A-Za-z0-9_\-]+)")


class Captured(logging.Handler):
    """Every record, formatted with its traceback, as the operator's log file would hold it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(OTHER_SIDE):
            self.lines.append(self.format(record))


OURS = ("strongroom", "uvicorn", "sqlalchemy", "fastapi", "starlette")


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Every record of ours at the root, whatever an earlier test's uvicorn configured (its
    access logger keeps its own handler and does not propagate)."""
    handler = Captured()
    root = logging.getLogger()
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(OURS)]
    loggers = [logging.getLogger(name) for name in (*OURS, *names)]
    saved = [(lg, lg.level, lg.propagate, lg.disabled, list(lg.handlers)) for lg in loggers]
    saved.append((root, root.level, root.propagate, root.disabled, list(root.handlers)))
    for logger in loggers:
        logger.handlers.clear()
        logger.propagate, logger.disabled = True, False
        logger.setLevel(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # uvicorn's default level; SQLAlchemy's statements included
    try:
        yield handler
    finally:
        for logger, level, propagate, disabled, handlers in saved:
            logger.setLevel(level)
            logger.propagate, logger.disabled, logger.handlers = propagate, disabled, handlers


class RefusingMailServer:
    """An SMTP server that refuses every recipient (550), so each email fails for good."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, _: Any):
        return f"550 5.1.1 <{address}>: no such mailbox"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    controller = Controller(RefusingMailServer(), hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def settings_for(engine: Engine, smtp_port: int) -> Settings:
    return Settings(
        env="test",
        database_url=engine.url.render_as_string(hide_password=False),
        run_worker=False,
        secret_key="test-secret-key-0123456789",
        rate_limits_enabled=False,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        mail=MailSettings(smtp_timeout_s=5, lease_s=60, max_attempts=1),
    )


def with_a_database_bug(app: FastAPI) -> FastAPI:
    """A route with a bug: its query names a column that does not exist, with the caller's
    email as a parameter, so the database error reaches the app's unexpected-error handler."""

    @app.post("/test/bug", include_in_schema=False)
    def bug(request: Request, body: dict[str, str]) -> None:
        with request.app.state.session_factory() as session:
            session.execute(
                text("SELECT id FROM users WHERE email = :email AND no_such_column = 1"),
                {"email": body["email"]},
            )

    return app


@pytest.fixture
def served(pg_db: Engine, smtp_port: int, captured: Captured) -> Iterator[str]:
    """The app on a real uvicorn with its access log, logging through the root logger (no
    log config of uvicorn's own, so every record reaches ``captured``)."""
    app = with_a_database_bug(create_app(settings_for(pg_db, smtp_port), pg_db))
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, log_level="debug", access_log=True
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Secrets:
    """Everything that must never be written to a log."""

    values: list[str] = field(default_factory=list)

    def add(self, *values: str) -> None:
        self.values.extend(v for v in values if v)


def emailed_token(engine: Engine, address: str) -> str:
    """The token of the newest email to ``address`` with a ``#token=`` link."""
    with db.make_session_factory(engine)() as session:
        rows = session.scalars(
            select(OutboxEmail)
            .where(OutboxEmail.to_address == address)
            .order_by(OutboxEmail.id.desc())
        ).all()
    for row in rows:
        found = LINK_TOKEN.search(row.body_text)
        if found:
            return found.group(1)
    raise AssertionError(f"no email with a link to {address}")


def sign_up(http: httpx.Client, engine: Engine, name: str, secrets: Secrets) -> str:
    email = f"{name.lower()}.{uuid.uuid4().hex[:8]}@example.com"
    secrets.add(email, email.split("@")[0])
    registered = http.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert registered.status_code == 201, registered.text
    token = emailed_token(engine, email)
    secrets.add(token)
    http.get("/app/verify-email")  # the link, as a browser opens it: the token stays after #
    verified = http.post("/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 204, verified.text
    return email


def sign_in(http: httpx.Client, email: str, secrets: Secrets, **extra: str) -> str:
    response = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD, **extra})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    secrets.add(token)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def turn_on_two_factor(http: httpx.Client, token: str, secrets: Secrets) -> tuple[pyotp.TOTP, str]:
    """2FA on (its first code at this step); the TOTP and one recovery code."""
    begun = http.post("/v1/me/2fa", json={"password": PASSWORD}, headers=bearer(token))
    assert begun.status_code == 200, begun.text
    seed = begun.json()["secret"]
    totp = pyotp.TOTP(seed)
    secrets.add(seed, begun.json()["otpauth_uri"])
    code = totp.now()
    confirmed = http.post(
        "/v1/me/2fa/confirm", json={"otp": code, "password": PASSWORD}, headers=bearer(token)
    )
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    secrets.add(code, *recovery)
    return totp, recovery[0]


def reset_password(
    http: httpx.Client, engine: Engine, email: str, recovery: str, secrets: Secrets
) -> None:
    asked = http.post("/v1/auth/password-reset", json={"email": email})
    assert asked.status_code == 202, asked.text
    token = emailed_token(engine, email)
    secrets.add(token, NEW_PASSWORD)
    http.get("/app/reset-password")  # the emailed link, as a browser opens it
    confirmed = http.post(
        "/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": NEW_PASSWORD, "otp": recovery},
    )
    assert confirmed.status_code == 204, confirmed.text


def move_money(http: httpx.Client, token: str, to: str) -> None:
    for path, body in (
        ("/v1/topups", {"asset": "HKD", "amount": "100.00", "channel": "sandbox"}),
        ("/v1/transfers", {"to": to, "asset": "HKD", "amount": "12.50", "note": "lunch"}),
    ):
        headers = {**bearer(token), "Idempotency-Key": uuid.uuid4().hex}
        response = http.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.text


def fail_requests(http: httpx.Client, email: str, token: str, secrets: Secrets) -> None:
    wrong = "a-wrong-password-9"
    secrets.add(wrong)
    refused = http.post("/v1/auth/login", json={"email": email, "password": wrong})
    assert refused.status_code == 401, refused.text
    malformed = http.post(
        "/v1/transfers",
        content=f'{{"to": "{email}", "password": "{wrong}"',
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400, malformed.text
    # uvicorn drops the connection after a 500 (Starlette raises the error again for it to log)
    bug = http.post("/test/bug", json={"email": email}, headers={"Connection": "close"})
    assert bug.status_code == 500, bug.text


def test_no_secret_in_the_logs(served: str, pg_db: Engine, smtp_port: int, captured: Captured):
    secrets = Secrets()
    secrets.add(PASSWORD)
    with httpx.Client(base_url=served, timeout=30) as http:
        alice = sign_up(http, pg_db, "Alice", secrets)
        bob = sign_up(http, pg_db, "Bob", secrets)
        token = sign_in(http, alice, secrets)
        totp, recovery = turn_on_two_factor(http, token, secrets)
        next_code = totp.at(time.time() + totp.interval)  # the clock-drift step: not used yet
        secrets.add(next_code)
        token = sign_in(http, alice, secrets, otp=next_code)
        move_money(http, token, bob)
        fail_requests(http, alice, token, secrets)
        reset_password(http, pg_db, alice, recovery, secrets)
    report = delivery.deliver_once(db.make_session_factory(pg_db), settings_for(pg_db, smtp_port))
    assert report.failed >= 4, report  # every email was refused for good, and logged

    logs = "\n".join(captured.lines)
    assert "uvicorn.access" in logs and "POST /v1/transfers" in logs, "the access log ran"
    assert "unhandled error" in logs and "no_such_column" in logs, "the error handler logged"
    assert "failed for good" in logs, "the delivery worker logged"
    leaked = sorted({s for s in secrets.values if s.lower() in logs.lower()})
    where = [line for line in captured.lines if any(v.lower() in line.lower() for v in leaked)]
    assert not leaked, f"secrets in the logs: {leaked}, in: {where[:3]}"
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", logs), "an email address in the logs"
