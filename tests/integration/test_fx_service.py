"""FX at the service level on both databases (PostgreSQL and the embedded SQLite): a conversion
once per key through ``movements.service.run_once``, its linked legs all or nothing (a second
leg that would overflow the received wallet undoes the first), and the locks it carries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.errors import DomainError
from strongroom.fx import service as fx
from strongroom.fx.models import FxConversion, FxQuote
from strongroom.identity import service as identity
from strongroom.identity import verification
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Transfer
from strongroom.movements import service as movements
from strongroom.movements.idempotency import Outcome
from strongroom.settings import Settings

SETTINGS = Settings(env="test", secret_key="test-secret-key-0123456789", run_worker=False)
REGISTRY = SETTINGS.asset_registry()


def _people(session: Session) -> tuple[User, User]:
    made = []
    for role in (None, "finance"):
        user = identity.register(
            session=session,
            email=f"{role or 'user'}@example.com",
            password="a-long-password-1",
            name="Someone",
            region="HK",
            settings=SETTINGS.auth,
            operator_role=role,
        )
        verification.verify(
            session=session,
            token=verification.send_link(
                session=session, user=user, settings=SETTINGS.auth, public_url="http://x"
            ),
        )
        made.append(user)
    return made[0], made[1]


def _fund(session: Session, user: User, asset: str, amount_minor: int) -> int:
    bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset)
    wallet = ledger.user_wallet_id(session=session, user_id=user.id, asset=asset)
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=bank.id,
            credit_account_id=wallet,
            asset=asset,
            amount_minor=amount_minor,
        ),
    )
    return wallet


def _convert(session: Session, user: User, quote_id: str, key: str) -> Outcome:
    def work(current: Session) -> Outcome:
        done = fx.convert(session=current, user=user, quote_id=quote_id, assets=REGISTRY)
        return Outcome(id=done.id, status="completed")

    return movements.run_once(
        session=session,
        settings=SETTINGS,
        actor_id=user.id,
        operation="POST /v1/conversions",
        key=key,
        request={"quote_id": quote_id},
        work=work,
    )


def _check(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def test_a_conversion_happens_once_per_key_and_carries_its_lock(
    factory: sessionmaker[Session],
) -> None:
    with db.unit_of_work(factory) as session:
        user, finance = _people(session)
        fx.set_rate(
            session=session,
            operator=finance,
            base=REGISTRY.get("BTC"),
            quote=REGISTRY.get("USDT"),
            mid="50000",
            spread_bps=0,
            settings=SETTINGS.fx,
        )
        wallet = _fund(session, user, "USDT", 100_000_000)  # 100 USDT
        unlocks_at = db.utcnow().replace(microsecond=0) + timedelta(hours=24)
        ledger.lock(
            session=session, account_id=wallet, amount_minor=100_000_000, unlocks_at=unlocks_at
        )
        quote = fx.quote(
            session=session,
            user=user,
            amount=REGISTRY.money("50", "USDT"),
            to_asset=REGISTRY.get("BTC"),
            settings=SETTINGS.fx,
        )
        quote_id, user_id = quote.id, user.id
    with db.unit_of_work(factory) as session:
        first = _convert(session, session.get_one(User, user_id), quote_id, "key-1")
    with db.unit_of_work(factory) as session:
        again = _convert(session, session.get_one(User, user_id), quote_id, "key-1")
    assert again == first
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(FxConversion)) == 1
        btc = ledger.user_wallet_id_if_any(session=session, user_id=user_id, asset="BTC")
        assert btc is not None
        held = ledger.balance(session=session, account_id=btc)
        assert (held.total_minor, held.locked_minor) == (100_000, 100_000)  # 0.001 BTC, all locked
        assert [u.at for u in held.unlocks] == [unlocks_at]
        assert ledger.balance(session=session, account_id=btc, now=unlocks_at).locked_minor == 0
    _check(factory)


def test_the_legs_are_atomic_a_failing_second_leg_undoes_the_first(
    factory: sessionmaker[Session],
) -> None:
    big = 3 * 10**38  # the most one transfer moves is 2^128 - 1, about 3.4e38
    with db.unit_of_work(factory) as session:
        user, finance = _people(session)
        fx.set_rate(
            session=session,
            operator=finance,
            base=REGISTRY.get("ETH"),
            quote=REGISTRY.get("HKD"),
            mid="0.000001",  # 1 HKD buys 10^6 ETH: 10^24 wei
            spread_bps=0,
            settings=SETTINGS.fx,
        )
        _fund(session, user, "HKD", 3 * 10**16)
        for _ in range(3):  # 9e38 wei: one more 3e38 overflows the wallet's credits column
            _fund(session, user, "ETH", big)
        quote = fx.quote(
            session=session,
            user=user,
            amount=REGISTRY.money(str(3 * 10**14), "HKD"),
            to_asset=REGISTRY.get("ETH"),
            settings=SETTINGS.fx,
        )
        assert quote.to_minor == big
        quote_id, user_id = quote.id, user.id
    with factory() as session:
        transfers = session.scalar(select(func.count()).select_from(Transfer))
    with pytest.raises(DomainError) as refused, db.unit_of_work(factory) as session:
        _convert(session, session.get_one(User, user_id), quote_id, "key-2")
    assert refused.value.code == "overflow"
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Transfer)) == transfers
        assert session.scalar(select(func.count()).select_from(FxConversion)) == 0
        hkd = ledger.user_wallet_id_if_any(session=session, user_id=user_id, asset="HKD")
        assert hkd is not None
        assert ledger.balance(session=session, account_id=hkd).total_minor == 3 * 10**16
        assert session.get_one(FxQuote, quote_id).to_minor == big
    _check(factory)
