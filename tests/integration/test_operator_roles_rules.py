"""R-SEC-10 below the HTTP layer, on PostgreSQL and SQLite: the one role table, the ledger's
refusal of a user account that may go negative (in the service and in the database), the
adjustments service's maker-checker (in the service and in the database: an approval by its
proposer is refused even when written straight into the table), money moved once, and service
keys stored hashed, scoped and revocable."""

from __future__ import annotations

import pytest
from sqlalchemy import Table, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from strongroom import db
from strongroom.adjustments import service as adjustments
from strongroom.adjustments.models import Adjustment
from strongroom.db import unit_of_work
from strongroom.errors import Conflict, DomainError, Forbidden, Unauthorized
from strongroom.identity import api_keys, roles
from strongroom.identity.models import AuditEvent, User
from strongroom.identity.service import OPERATOR_ROLES
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import LedgerError, TransferSpec
from strongroom.ledger.models import Account, Transfer
from strongroom.settings import LedgerLimits

ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
LIMITS = LedgerLimits()


def test_the_role_table_is_least_privilege() -> None:
    assert set(roles.ROLES) == set(OPERATOR_ROLES)
    assert all(holders <= set(roles.ROLES) for holders in roles.TABLE.values())
    assert roles.holders("balances") == {"admin", "finance"}  # SPEC R-SEC-10
    assert roles.holders("audit") == {"admin"}
    assert roles.holders("ledger.write") == frozenset()  # service keys only
    for capability in ("adjustments.propose", "adjustments.approve"):
        assert roles.holders(capability) <= {"admin", "finance"}
    assert not roles.may(None, "dashboard") and not roles.may("superuser", "dashboard")
    with pytest.raises(Forbidden) as refused:
        roles.require("support", "balances")
    assert refused.value.details == {"capability": "balances", "roles": ["admin", "finance"]}


@pytest.fixture
def people(factory: sessionmaker[Session]) -> dict[str, str]:
    """Two finance operators, an admin and a support operator (ids), and a funded wallet."""
    ids = {}
    with unit_of_work(factory) as session:
        for name, role in (("maker", "finance"), ("checker", "finance"), ("admin", "admin")):
            ids[name] = _user(session, name, role)
        ids["support"] = _user(session, "support", "support")
        ids["alice"] = _user(session, "alice", None)
    return ids


def _user(session: Session, name: str, role: str | None) -> str:
    user = User(
        id=f"u_{name}",
        email=f"{name}@example.com",
        password_hash="x",
        name=name,
        region="HK",
        operator_role=role,
        created_at=db.utcnow(),
    )
    session.add(user)
    session.flush()
    return user.id


@pytest.fixture
def book(factory: sessionmaker[Session], people: dict[str, str]) -> dict[str, int]:
    with unit_of_work(factory) as session:
        bank = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        alice = ledger.user_wallet_id(session=session, user_id=people["alice"], asset="HKD")
        ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=bank, credit_account_id=alice, asset="HKD", amount_minor=10_00
            ),
        )
    return {"bank": bank, "alice": alice}


def _total(factory: sessionmaker[Session], account_id: int) -> int:
    with factory() as session:
        return ledger.balance(session=session, account_id=account_id).total_minor


def _propose(
    factory: sessionmaker[Session], maker: str, debit: int, credit: int, minor: int
) -> int:
    with unit_of_work(factory) as session:
        row = adjustments.propose(
            session=session,
            proposer=session.get_one(User, maker),
            proposal=adjustments.Proposal(debit, credit, "HKD", minor, "a reason"),
            limits=LIMITS,
        )
        return row.id


def test_no_user_account_may_go_negative_in_the_service_or_the_database(
    factory: sessionmaker[Session], book: dict[str, int]
) -> None:
    with unit_of_work(factory) as session:
        for change in ({"allow_negative": True}, {"negative_limit_minor": 100}):
            with pytest.raises(LedgerError) as refused:
                ledger.ensure_account(
                    session=session,
                    owner_type="user",
                    owner_id="mallory",
                    kind="wallet",
                    asset="HKD",
                    **change,  # type: ignore[arg-type]
                )
            assert refused.value.code == "user_account_may_not_go_negative"
    row = {
        "owner_type": "user",
        "owner_id": "mallory",
        "kind": "wallet",
        "asset": "HKD",
        "allow_negative": True,
        "negative_limit_minor": 0,
        "debits_posted": 0,
        "credits_posted": 0,
        "debits_pending": 0,
        "credits_pending": 0,
        "created_at": db.utcnow(),
    }
    writes = [
        ACCOUNTS.insert().values(row),
        ACCOUNTS.insert().values(row | {"allow_negative": False, "negative_limit_minor": 5}),
        update(Account).where(Account.id == book["alice"]).values(allow_negative=True),
    ]
    for statement in writes:  # straight into the table, around the service
        with factory() as session, pytest.raises((IntegrityError, DBAPIError)):
            session.execute(statement)
            session.commit()
    with factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(Account).filter_by(owner_id="mallory"))
            == 0
        )
        assert session.get_one(Account, book["alice"]).allow_negative is False
    with unit_of_work(factory) as session:  # operators' accounts may, as before
        ledger.ensure_account(
            session=session,
            owner_type="operator",
            owner_id="ops",
            kind="float",
            asset="HKD",
            allow_negative=True,
        )


def test_maker_checker_moves_money_once_and_never_on_the_makers_word(
    factory: sessionmaker[Session], people: dict[str, str], book: dict[str, int]
) -> None:
    adjustment = _propose(factory, people["maker"], book["bank"], book["alice"], 5_00)
    assert _total(factory, book["alice"]) == 10_00
    with pytest.raises(Forbidden) as own, unit_of_work(factory) as session:
        adjustments.approve(
            session=session,
            approver=session.get_one(User, people["maker"]),
            adjustment_id=adjustment,
            limits=LIMITS,
        )
    assert own.value.code == "own_adjustment"
    with pytest.raises(Forbidden), unit_of_work(factory) as session:  # support: not its role
        adjustments.approve(
            session=session,
            approver=session.get_one(User, people["support"]),
            adjustment_id=adjustment,
            limits=LIMITS,
        )
    with factory() as session:  # the refused self-approval left its audit event
        refused = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "adjustment.self_approval_refused")
        ).all()
        assert [event.actor_id for event in refused] == [people["maker"]]
        assert session.get_one(Adjustment, adjustment).status == "pending"
    assert _total(factory, book["alice"]) == 10_00
    with unit_of_work(factory) as session:
        done = adjustments.approve(
            session=session,
            approver=session.get_one(User, people["checker"]),
            adjustment_id=adjustment,
            limits=LIMITS,
        )
        assert (done.status, done.transfer_id) == ("approved", f"adjustment:{adjustment}")
    with pytest.raises(Conflict) as twice, unit_of_work(factory) as session:
        adjustments.approve(
            session=session,
            approver=session.get_one(User, people["admin"]),
            adjustment_id=adjustment,
            limits=LIMITS,
        )
    assert twice.value.code == "adjustment_not_pending"
    assert _total(factory, book["alice"]) == 15_00
    with factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(Transfer).filter_by(code="adjustment"))
            == 1
        )


def test_the_database_refuses_an_approval_by_its_proposer(
    factory: sessionmaker[Session], people: dict[str, str], book: dict[str, int]
) -> None:
    adjustment = _propose(factory, people["maker"], book["bank"], book["alice"], 1_00)
    with unit_of_work(factory) as session:  # a real transfer to point at
        transfer = ledger.transfer(
            session=session,
            spec=TransferSpec(
                debit_account_id=book["bank"],
                credit_account_id=book["alice"],
                asset="HKD",
                amount_minor=1,
            ),
        )
    forged = [
        {"decided_by": people["maker"], "transfer_id": transfer},  # the maker as the checker
        {"decided_by": people["checker"], "transfer_id": None},  # approved, nothing moved
        {"decided_by": None, "transfer_id": transfer},  # approved by nobody
    ]
    for values in forged:
        with factory() as session, pytest.raises((IntegrityError, DBAPIError)):
            session.execute(
                update(Adjustment)
                .where(Adjustment.id == adjustment)
                .values(status="approved", decided_at=db.utcnow(), **values)
            )
            session.commit()
    with factory() as session:
        assert session.get_one(Adjustment, adjustment).status == "pending"


def test_an_approval_the_ledger_refuses_leaves_it_pending(
    factory: sessionmaker[Session], people: dict[str, str], book: dict[str, int]
) -> None:
    adjustment = _propose(factory, people["maker"], book["alice"], book["bank"], 10_01)
    with pytest.raises(DomainError) as refused, unit_of_work(factory) as session:
        adjustments.approve(
            session=session,
            approver=session.get_one(User, people["admin"]),
            adjustment_id=adjustment,
            limits=LIMITS,
        )
    assert refused.value.code == "insufficient_funds"
    with factory() as session:
        assert session.get_one(Adjustment, adjustment).status == "pending"
    assert _total(factory, book["alice"]) == 10_00


def test_service_keys_are_hashed_scoped_and_revocable(
    factory: sessionmaker[Session],
) -> None:
    with unit_of_work(factory) as session:
        issued = api_keys.create(session=session, name="settlement", scope="ledger")
    with factory() as session:
        stored = session.get_one(api_keys.ApiKey, issued.id)
        assert stored.key_hash == api_keys.digest(issued.key) != issued.key
        assert issued.key.startswith(stored.key_prefix) and len(stored.key_prefix) == 12
        caller = api_keys.authenticate(session=session, key=issued.key, scope="ledger")
        assert (caller.id, caller.name, caller.owner_type) == (issued.id, "settlement", "platform")
        with pytest.raises(Forbidden) as scope:
            api_keys.authenticate(session=session, key=issued.key, scope="merchant")
        assert scope.value.code == "insufficient_scope"
        for wrong in (None, "", issued.key + "x", issued.key.upper(), "srk_" + "x" * 200):
            with pytest.raises(Unauthorized):
                api_keys.authenticate(session=session, key=wrong, scope="ledger")
    with unit_of_work(factory) as session:
        api_keys.revoke(session=session, key_id=issued.id)
    with factory() as session, pytest.raises(Unauthorized) as revoked:
        api_keys.authenticate(session=session, key=issued.key, scope="ledger")
    assert revoked.value.code == "invalid_api_key"
