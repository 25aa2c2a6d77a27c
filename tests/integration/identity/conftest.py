"""Fixtures for the identity and notification tests: a real SMTP server in-process (aiosmtpd on
a free loopback port), settings pointing at it, a fixed clock and a way to make users."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from strongroom.db import unit_of_work
from strongroom.identity import service as identity
from strongroom.identity import two_factor, verification
from strongroom.identity.models import TotpFactor, User
from strongroom.identity.step_up import StepUp
from strongroom.settings import MailSettings, Settings

PASSWORD = "correct-horse-battery-9"
PUBLIC_URL = "https://wallet.example"
T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    """What the SMTP server received, as parsed messages."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


class SmtpServer:
    """An aiosmtpd server on a fixed port that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


def make_settings(engine: Engine, port: int, **mail: Any) -> Settings:
    return Settings(
        env="test",
        database_url=engine.url.render_as_string(hide_password=False),
        run_worker=False,
        secret_key="test-secret-key-0123456789",
        smtp_host="127.0.0.1",
        smtp_port=port,
        mail=MailSettings(smtp_timeout_s=5, lease_s=60, **mail),
    )


@pytest.fixture
def settings(any_db: Engine, smtp: SmtpServer) -> Settings:
    return make_settings(any_db, smtp.port)


def make_user(
    factory: sessionmaker[Session],
    settings: Settings,
    name: str = "Alice Chan",
    *,
    operator_role: str | None = None,
    email: str | None = None,
) -> User:
    address = email or f"{name.split()[0].lower()}@example.com"
    with unit_of_work(factory) as session:
        return identity.register(
            session=session,
            email=address,
            password=PASSWORD,
            name=name,
            region="HK",
            settings=settings.auth,
            operator_role=operator_role,
            now=T0,
        )


def reload(factory: sessionmaker[Session], user: User) -> User:
    with factory() as session:
        found = session.get(User, user.id)
        assert found is not None
        return found


def signed_in(factory: sessionmaker[Session], user: User, now: datetime = T0) -> str:
    """A session of the user (committed, as a request's is before its step-up); its id."""
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        return identity.issue_token(session=session, user=found, ttl_s=3600, now=now).session_id


def stepped_up(
    session: Session,
    user: User,
    settings: Settings,
    session_id: str,
    *,
    password: str = PASSWORD,
    otp: str | None = None,
    now: datetime = T0,
) -> StepUp:
    """R-SEC-8's proof for a change, as a request makes it in session ``session_id``
    (``signed_in``): the password again (and ``otp`` with 2FA on)."""
    return identity.step_up(
        session=session,
        user=user,
        session_id=session_id,
        password=password,
        otp=otp,
        settings=settings.auth,
        now=now,
    )


def seed(factory: sessionmaker[Session], settings: Settings, user: User) -> str:
    """The user's TOTP seed, opened with the vault key (the column holds it sealed)."""
    with factory() as session:
        factor = session.get(TotpFactor, user.id)
        assert factor is not None
        return two_factor.secret_of(factor, settings.auth)


def verify_user(factory: sessionmaker[Session], settings: Settings, user: User) -> None:
    """Verify the user's email with the token its link carries, as the link does."""
    with unit_of_work(factory) as session:
        found = session.get(User, user.id)
        assert found is not None
        token = verification.send_link(
            session=session, user=found, settings=settings.auth, public_url=PUBLIC_URL, now=T0
        )
        verification.verify(session=session, token=token, now=T0)
