"""Payment codes and virtual cards on both databases (SQLite is the embedded default): a code
accepted once, a card number resolved, through the services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import DomainError
from strongroom.identity import service as identity
from strongroom.identity.models import User
from strongroom.paycodes import domain
from strongroom.paycodes import service as paycodes
from strongroom.settings import Settings
from strongroom.tokens import service as tokens

SETTINGS = Settings(env="test", secret_key="test-secret-key-0123456789", run_worker=False)


def _user(factory: sessionmaker[Session]) -> str:
    with db.unit_of_work(factory) as session:
        user = identity.register(
            session=session,
            email="payer@example.com",
            password="a-long-password-1",
            name="Payer",
            region="HK",
            settings=SETTINGS.auth,
        )
        return user.id


def test_codes_and_cards_on_both_databases(factory: sessionmaker[Session]) -> None:
    user_id = _user(factory)
    now = datetime.now(UTC)
    codes, keyring = SETTINGS.payment_codes, SETTINGS.auth.vault
    with db.unit_of_work(factory) as session:
        user = session.get_one(User, user_id)
        registered = paycodes.register_device(
            session=session, user=user, name="phone", settings=codes, keyring=keyring
        )
        card = tokens.create(session=session, user=user, settings=SETTINGS)
    code = domain.code(
        issuer_id=codes.issuer_id,
        locator=registered.device.locator,
        secret=domain.secret_bytes(registered.secret),
        step=domain.step_of(now, codes.step_s),
    )
    with db.unit_of_work(factory) as session:
        resolved = paycodes.resolve_and_consume(
            session=session, code=code, settings=codes, keyring=keyring, now=now
        )
        assert resolved.user_id == user_id
    later = now + timedelta(minutes=2)
    for moment, refusal in ((now, "payment_code_used"), (later, "payment_code_expired")):
        with pytest.raises(DomainError) as refused, db.unit_of_work(factory) as session:
            paycodes.resolve_and_consume(
                session=session, code=code, settings=codes, keyring=keyring, now=moment
            )
        assert refused.value.code == refusal
    with db.unit_of_work(factory) as session:
        owner = tokens.resolve(session=session, number=card.number, settings=SETTINGS)
        assert owner.user_id == user_id and owner.last4 == card.number[-4:]
