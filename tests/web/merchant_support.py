"""Helpers for the merchant portal's tests: a merchant onboarded by an operator, people who
work for it with a role, fresh payment codes of a payer, charges made through the service,
and signing in to the portal as a browser would."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.merchants import charges
from strongroom.merchants import service as merchants
from strongroom.paycodes import service as paycodes
from tests.api.conftest import make_settings

from .conftest import WebUser, csrf_token, sandbox_topup, web_user
from .console_support import make_operator


def _user(session: object, email: str) -> User:
    found = identity.find_user(session=session, reference=email)  # type: ignore[arg-type]
    assert found is not None
    return found


def shop(engine: Engine, name: str = "Lucky Tea House", region: str = "HK") -> str:
    """A merchant onboarded by an admin, as ``POST /v1/admin/merchants`` does."""
    operator = make_operator(engine)
    settings = make_settings(engine)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        made = merchants.onboard(
            session=session,
            operator=_user(session, operator.email),
            name=name,
            mcc="5812",
            region=region,
            holder_name="Lucky Tea House Ltd",
            bank_code="004",
            account_number="123456789",
            settings=settings,
        )
        merchant_id: str = made.id
    return merchant_id


def hire(engine: Engine, merchant_id: str, role: str, user: WebUser | None = None) -> WebUser:
    """A person (a new user unless ``user``) given ``role`` at the merchant by an admin."""
    person = user or web_user(engine, role.capitalize())
    operator = make_operator(engine)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        merchants.add_member(
            session=session,
            operator=_user(session, operator.email),
            merchant=merchants.get(session=session, merchant_id=merchant_id),
            user=_user(session, person.email),
            role=role,
        )
    return person


def payer(engine: Engine, amount: str = "500.00") -> WebUser:
    person = web_user(engine, "Payer")
    sandbox_topup(engine, person.email, amount)
    return person


def payment_code(engine: Engine, email: str) -> str:
    """A fresh code of a new device (one code per device and time step)."""
    settings = make_settings(engine)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        user = _user(session, email)
        device = paycodes.register_device(
            session=session,
            user=user,
            name=f"phone {uuid.uuid4().hex[:6]}",
            settings=settings.payment_codes,
            keyring=settings.auth.vault,
        )
        code: str = paycodes.issue_code(
            session=session,
            user=user,
            settings=settings.payment_codes,
            keyring=settings.auth.vault,
            device_id=device.device.id,
        ).code
    return code


def charge(engine: Engine, merchant_id: str, email: str, amount: str = "100.00") -> str:
    """A charge made through the charge service (as ``POST /v1/merchant/charges``)."""
    code = payment_code(engine, email)
    settings = make_settings(engine)
    registry = settings.asset_registry()
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        merchant = merchants.get(session=session, merchant_id=merchant_id)
        found = charges.payer_from(
            session=session,
            merchant=merchant,
            settings=settings,
            payment_code=code,
            token=None,
            emv_payload=None,
        )
        row = charges.charge(
            session=session,
            merchant=merchant,
            payer=found,
            amount=registry.money(amount, merchants.currency_of(merchant)),
            settings=settings,
            assets=registry,
            actor="test",
        )
        charge_id: str = row.id
    return charge_id


def portal_sign_in(client: httpx.Client, user: WebUser) -> httpx.Response:
    """Sign in to the portal (no 2FA); the chooser answers next (one merchant: to it)."""
    token = csrf_token(client.get("/merchant/signin").text)
    response = client.post(
        "/merchant/signin",
        data={"csrf_token": token, "email": user.email, "password": user.password},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/merchant/choose"
    return client.get("/merchant/choose")
