"""Limits under concurrent requests on PostgreSQL (R-LIMIT-1 "the check and the transfer cannot
interleave"): 16 threads send P2P transfers (and, in the second test, top-ups) through the
request path (``movements.submit``: the request-time check, then the group-commit batcher),
split over two batchers as two server processes would be, from one user's HKD and USD wallets,
together far over the day limit (or the max balance). The sum accepted never exceeds it."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.errors import DomainError
from strongroom.funding import service as funding
from strongroom.identity.models import User
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferSpec
from strongroom.ledger.models import Account, Transfer
from strongroom.movements import service as movements
from strongroom.movements.batcher import Batcher
from strongroom.payments import service as payments
from strongroom.settings import Settings

THREADS = 16
PER_THREAD = 6
SETTINGS = Settings(env="test", secret_key="test-secret-key-0123456789")
REGISTRY = SETTINGS.asset_registry()
HKD_PER_USD = Fraction(78, 10)


def _user(session: Session) -> User:
    user = User(
        id=uuid.uuid4().hex,
        email=f"{uuid.uuid4().hex[:8]}@example.com",
        password_hash="-",
        name="Racer",
        region="HK",
        kyc_tier="unverified",
        email_verified_at=datetime.now(UTC) - timedelta(days=1),
    )
    session.add(user)
    session.flush()
    return user


def _seed(session: Session, user: User, major: str, asset: str) -> None:
    bank = ledger.operator_account(session=session, kind="bank_omnibus", asset=asset)
    ledger.transfer(
        session=session,
        spec=TransferSpec(
            debit_account_id=bank.id,
            credit_account_id=ledger.user_wallet_id(session=session, user_id=user.id, asset=asset),
            asset=asset,
            amount_minor=REGISTRY.money(major, asset).amount_minor,
            code="seed",
        ),
    )


def _race(
    engine: Engine, user_id: str, prepare: Callable[[Session, User, str, str], TransferSpec]
) -> Counter[str]:
    factory = db.make_session_factory(engine)
    batchers = [Batcher(factory, max_batch=8), Batcher(factory, max_batch=8)]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(PER_THREAD):
            asset, amount = ("HKD", "100") if (n + i) % 2 else ("USD", "10")
            try:
                with db.unit_of_work(factory) as session:
                    user = session.get_one(User, user_id)
                    movements.submit(
                        session=session,
                        batcher=batchers[n % 2],
                        settings=SETTINGS,
                        actor_id=user_id,
                        operation="race",
                        key=uuid.uuid4().hex,
                        request={"n": n, "i": i},
                        prepare=lambda s, u=user, a=asset, m=amount: prepare(s, u, a, m),
                    )
                outcome = f"ok:{asset}"
            except DomainError as error:
                outcome = error.code
            except Exception as error:  # anything else fails the test
                outcome = f"unexpected:{type(error).__name__}:{error}"
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for batcher in batchers:
        batcher.close()
    return outcomes


def _moved_hkd(engine: Engine, user_id: str, code: str) -> Fraction:
    with db.make_session_factory(engine)() as session:
        side = Transfer.debit_account_id if code == "p2p" else Transfer.credit_account_id
        rows = session.execute(
            select(Transfer.asset, Transfer.amount_minor)
            .join(Account, Account.id == side)
            .where(Account.owner_id == user_id, Transfer.code == code)
        ).all()
    total = Fraction(0)
    for asset, minor in rows:
        total += Fraction(int(minor), 100) * (HKD_PER_USD if asset == "USD" else 1)
    return total


def test_racing_p2p_sends_never_exceed_the_day_limit(pg_db: Engine) -> None:
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        sender, recipient = _user(session), _user(session)
        _seed(session, sender, "10000", "HKD")
        _seed(session, sender, "1000", "USD")
        sender_id, recipient_email = sender.id, recipient.email

    def send(session: Session, user: User, asset: str, amount: str) -> TransferSpec:
        return payments.prepare_send(
            session=session,
            sender=user,
            to=recipient_email,
            amount=REGISTRY.money(amount, asset),
            note=None,
            limits=SETTINGS.ledger,
            settings=SETTINGS,
        )

    outcomes = _race(pg_db, sender_id, send)
    assert set(outcomes) <= {"ok:HKD", "ok:USD", "limit_exceeded"}, outcomes
    assert outcomes["limit_exceeded"] > 0
    sent = _moved_hkd(pg_db, sender_id, "p2p")
    assert sent <= 3000, (sent, outcomes)  # 16 x 6 transfers would be 8,544 HKD
    assert sent > 3000 - 100  # and the limit is used, not refused wholesale


def test_racing_top_ups_never_exceed_the_max_balance(pg_db: Engine) -> None:
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        user = _user(session)
        _seed(session, user, "1000", "HKD")  # held already: 2,000 HKD of room
        user_id = user.id

    def topup(session: Session, user: User, asset: str, amount: str) -> TransferSpec:
        return funding.prepare_topup(
            session=session,
            user=user,
            amount=REGISTRY.money(amount, asset),
            channel="sandbox",
            settings=SETTINGS,
        )

    outcomes = _race(pg_db, user_id, topup)
    assert set(outcomes) <= {"ok:HKD", "ok:USD", "limit_exceeded"}, outcomes
    assert outcomes["limit_exceeded"] > 0
    credited = _moved_hkd(pg_db, user_id, "topup")
    assert credited + 1000 <= 3000, (credited, outcomes)
    assert credited + 1000 > 3000 - 100
    with db.make_session_factory(pg_db)() as session:
        fiat = sum(
            (
                Fraction(b.total_minor, 100) * (HKD_PER_USD if b.asset == "USD" else 1)
                for b in ledger.wallet_balances(session=session, user_id=user_id)
            ),
            Fraction(0),
        )
    assert fiat <= 3000
