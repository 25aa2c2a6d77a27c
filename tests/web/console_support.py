"""Helpers of the console tests (``test_console_*.py``): operators made with the identity
service, the console's two-step sign-in over HTTP and in a browser, and the demo served with
its mail sink."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pyotp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom import demo as demo_data
from strongroom.app import create_app
from strongroom.identity import service as identity
from strongroom.notify.models import PENDING, OutboxEmail
from strongroom.settings import MailSettings, Settings
from strongroom.web.console import inbox
from tests.api.conftest import PASSWORD, make_settings

from .conftest import WebUser, csrf_token, serving

if TYPE_CHECKING:
    from playwright.sync_api import Page

DELIVERY_WAIT_S = 60


def browser_sign_in(page: Page, url: str, operator: WebUser) -> None:
    """Both steps, typed into the forms; the code computed from the operator's secret."""
    assert operator.totp_secret is not None
    page.goto(f"{url}/console/signin")
    page.fill("#email", operator.email)
    page.fill("#password", operator.password)
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(f"{url}/console/signin/code")
    page.fill("#otp", pyotp.TOTP(operator.totp_secret).now())
    page.locator("form.form button[type=submit]").click()
    page.wait_for_url(f"{url}/console/")


def make_operator(engine: Engine, role: str = "admin", *, two_factor: bool = True) -> WebUser:
    """An operator created as ``strongroom admin create-operator --with-totp-secret`` does."""
    email = f"op.{role}.{uuid.uuid4().hex[:6]}@example.com"
    settings = make_settings(engine).auth
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = identity.register(
            session=session,
            email=email,
            password=PASSWORD,
            name=f"Operator {role}",
            region="HK",
            settings=settings,
            operator_role=role,
        )
        secret = (
            identity.enrol_totp_now(session=session, user=user, settings=settings).secret
            if two_factor
            else None
        )
    return WebUser(email=email, password=PASSWORD, name=f"Operator {role}", totp_secret=secret)


def password_step(client: httpx.Client, email: str, password: str) -> httpx.Response:
    token = csrf_token(client.get("/console/signin").text)
    return client.post(
        "/console/signin", data={"csrf_token": token, "email": email, "password": password}
    )


def console_sign_in(client: httpx.Client, operator: WebUser) -> None:
    """Both steps of the console's sign-in, the code computed from the TOTP secret."""
    assert operator.totp_secret is not None
    first = password_step(client, operator.email, operator.password)
    assert first.status_code == 303, first.text
    assert first.headers["location"] == "/console/signin/code"
    token = csrf_token(client.get("/console/signin/code").text)
    code = pyotp.TOTP(operator.totp_secret).now()
    second = client.post("/console/signin/code", data={"csrf_token": token, "otp": code})
    assert second.status_code == 303, second.text
    assert second.headers["location"] == "/console/"


@dataclass
class DemoSite:
    url: str
    engine: Engine
    settings: Settings
    logins: list[demo_data.Login]
    maildir: Path


def pending_emails(engine: Engine) -> int:
    with db.make_session_factory(engine)() as session:
        count = session.scalar(
            select(func.count()).select_from(OutboxEmail).where(OutboxEmail.status == PENDING)
        )
    return int(count or 0)


def wait_for_delivery(engine: Engine) -> None:
    """Until the outbox worker has delivered every email (a bounded wait, not a timing)."""
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while pending_emails(engine) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pending_emails(engine) == 0, "the outbox worker did not deliver the demo's emails"


@contextmanager
def demo_site(directory: Path) -> Iterator[DemoSite]:
    """The demo as ``strongroom demo`` runs it: its data in a fresh SQLite database, env
    ``demo``, the mail sink on a free port, the outbox worker delivering to it, the inbox."""
    engine = db.make_engine(f"sqlite:///{directory / demo_data.DATABASE_FILE}")
    db.upgrade(engine)
    settings = make_settings(engine).model_copy(
        update={"env": "demo", "run_worker": True, "mail": MailSettings(poll_interval_s=0.2)}
    )
    factory = db.make_session_factory(engine)
    logins = demo_data.populate(factory, settings, audits_dir=directory / demo_data.AUDITS)
    maildir = directory / demo_data.MAILDIR
    try:
        with demo_data.MailSink(maildir) as sink:
            app = create_app(demo_data.smtp_settings(settings, sink, "http://127.0.0.1"), engine)
            setattr(app.state, inbox.STATE_KEY, maildir)
            with serving(app) as url:
                yield DemoSite(url, engine, settings, logins, maildir)
    finally:
        engine.dispose()
