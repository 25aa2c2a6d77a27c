"""A Hypothesis state machine drives random top-ups, transfers, linked groups, pending, post,
void and timeouts against the real ledger on PostgreSQL, and a plain-Python model beside it.
After every step the invariants of R-LEDGER-5 hold and every balance equals the model's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind, TransferSpec
from strongroom.ledger.models import Account
from tests.conftest import TABLES

WALLETS = 4
amounts = st.integers(min_value=1, max_value=5_000)
wallet = st.integers(min_value=0, max_value=WALLETS - 1)


@dataclass
class Pending:
    id: str
    debit: int
    credit: int
    amount: int
    timeout_at: datetime | None
    open: bool = True


class LedgerMachine(RuleBasedStateMachine):
    engine: Engine

    @initialize()
    def setup(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        self.factory = db.make_session_factory(self.engine)
        self.clock = datetime(2026, 1, 1, tzinfo=db.utcnow().tzinfo)
        with db.unit_of_work(self.factory) as session:
            self.bank = ledger.operator_account(
                session=session, kind="bank_omnibus", asset="HKD"
            ).id
            self.wallets = [
                ledger.user_wallet(session=session, user_id=f"w{i}", asset="HKD").id
                for i in range(WALLETS)
            ]
        self.posted = {account: 0 for account in [self.bank, *self.wallets]}
        self.reserved = {account: 0 for account in self.posted}  # debits_pending
        self.incoming = {account: 0 for account in self.posted}  # credits_pending
        self.pendings: list[Pending] = []

    # -- helpers

    def available(self, account: int) -> int:
        return self.posted[account] - self.reserved[account]

    def submit(self, *specs: TransferSpec) -> list[ledger.TransferResult]:
        with db.unit_of_work(self.factory) as session:
            return ledger.create_transfers(session=session, specs=list(specs), now=self.clock)

    def move(self, debit: int, credit: int, amount: int) -> None:
        self.posted[debit] -= amount
        self.posted[credit] += amount

    def spec(self, debit: int, credit: int, amount: int, **extra: object) -> TransferSpec:
        return TransferSpec(
            debit_account_id=debit,
            credit_account_id=credit,
            asset="HKD",
            amount_minor=amount,
            **extra,
        )  # type: ignore[arg-type]

    # -- rules

    @rule(to=wallet, amount=amounts)
    def topup(self, to: int, amount: int) -> None:
        (result,) = self.submit(self.spec(self.bank, self.wallets[to], amount))
        assert result.ok
        self.move(self.bank, self.wallets[to], amount)

    @rule(a=wallet, b=wallet, amount=amounts)
    def transfer(self, a: int, b: int, amount: int) -> None:
        debit, credit = self.wallets[a], self.wallets[b]
        (result,) = self.submit(self.spec(debit, credit, amount))
        if a == b:
            assert result.error is not None and result.error.code == "same_account"
        elif amount <= self.available(debit):
            assert result.ok, result.error
            self.move(debit, credit, amount)
        else:
            assert result.error is not None and result.error.code == "insufficient_funds"

    @rule(a=wallet, b=wallet, c=wallet, first=amounts, second=amounts)
    def linked_pair(self, a: int, b: int, c: int, first: int, second: int) -> None:
        x, y, z = self.wallets[a], self.wallets[b], self.wallets[c]
        results = self.submit(self.spec(x, y, first, linked=True), self.spec(y, z, second))
        ok = a != b and b != c and first <= self.available(x)
        if ok:  # simulate the group: the first leg, then the second on the new balances
            self.move(x, y, first)
            if second > self.available(y):
                self.move(y, x, first)  # the group fails as a whole
                ok = False
            else:
                self.move(y, z, second)
        assert all(r.ok for r in results) == ok, [r.error for r in results]
        assert all(r.ok for r in results) or all(not r.ok for r in results)

    @rule(
        a=wallet,
        b=wallet,
        amount=amounts,
        timeout_s=st.none() | st.integers(min_value=1, max_value=120),
    )
    def pending(self, a: int, b: int, amount: int, timeout_s: int | None) -> None:
        debit, credit = self.wallets[a], self.wallets[b]
        (result,) = self.submit(
            self.spec(debit, credit, amount, kind=TransferKind.PENDING, timeout_s=timeout_s)
        )
        if a != b and amount <= self.available(debit):
            assert result.ok, result.error
            timeout_at = self.clock + timedelta(seconds=timeout_s) if timeout_s else None
            self.pendings.append(Pending(result.id, debit, credit, amount, timeout_at))
            self.reserved[debit] += amount
            self.incoming[credit] += amount
        else:
            assert not result.ok

    def _close(self, pending: Pending) -> None:
        pending.open = False
        self.reserved[pending.debit] -= pending.amount
        self.incoming[pending.credit] -= pending.amount

    @precondition(lambda self: self.pendings)
    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        pending = data.draw(st.sampled_from(self.pendings))
        amount = data.draw(st.none() | st.integers(1, pending.amount + 10))
        (result,) = self.submit(
            TransferSpec(kind=TransferKind.POST_PENDING, pending_id=pending.id, amount_minor=amount)
        )
        expired = pending.timeout_at is not None and pending.timeout_at <= self.clock
        if pending.open and not expired and (amount is None or amount <= pending.amount):
            assert result.ok, result.error
            self._close(pending)
            self.move(pending.debit, pending.credit, pending.amount if amount is None else amount)
        else:
            assert not result.ok

    @precondition(lambda self: self.pendings)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        pending = data.draw(st.sampled_from(self.pendings))
        (result,) = self.submit(TransferSpec(kind=TransferKind.VOID_PENDING, pending_id=pending.id))
        assert result.ok == pending.open
        if pending.open:
            self._close(pending)

    @rule(seconds=st.integers(min_value=1, max_value=90))
    def time_passes_and_sweeper_runs(self, seconds: int) -> None:
        self.clock += timedelta(seconds=seconds)
        with db.unit_of_work(self.factory) as session:
            voided = ledger.expire_pending(session=session, now=self.clock)
        due = [
            p
            for p in self.pendings
            if p.open and p.timeout_at is not None and p.timeout_at <= self.clock
        ]
        assert voided == len(due)
        for pending in due:
            self._close(pending)

    # -- invariants

    @invariant()
    def ledger_invariants_hold_and_match_the_model(self) -> None:
        with self.factory() as session:
            report = reports.check(session=session)
            assert report.ok, report.problems
            for account_id, posted in self.posted.items():
                account = session.get(Account, account_id)
                assert account is not None
                assert account.credits_posted - account.debits_posted == posted
                assert account.debits_pending == self.reserved[account_id]
                assert account.credits_pending == self.incoming[account_id]
                if account_id != self.bank:
                    assert posted - self.reserved[account_id] >= 0


@pytest.mark.parametrize("any_db", ["postgresql"], indirect=True)
def test_ledger_state_machine(any_db: Engine) -> None:
    LedgerMachine.engine = any_db
    runner = LedgerMachine.TestCase
    runner.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    runner().runTest()
