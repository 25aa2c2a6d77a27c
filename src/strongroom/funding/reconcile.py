"""``strongroom ledger reconcile``: the ledger against the connectors' records (top-ups; payouts
join when withdrawals exist).

Every confirmed top-up has exactly one ledger transfer (``topup:<id>``, unique by its id) of the
amount that arrived, from the operator's bank omnibus account to the user's wallet in the
top-up's asset; every top-up transfer in the ledger (code ``topup``) belongs to a confirmed
record. The sandbox's plain top-ups (confirmed at once, money from nothing, never in
production) have no record: they are counted apart where the sandbox is switched on, and are
breaks where it is not. Both sides are read in streamed, joined queries (one pass each).

Purchases (``funding.purchases``): each bought one has exactly its two legs
(``purchase:<id>.pay``, bank omnibus -> the operator's FX account in the paid asset, the amount
paid; ``purchase:<id>.credit``, the FX account in the bought asset -> the user's wallet, the
quoted amount), its payment is a confirmed top-up of the quoted amount with no ``topup:``
credit of its own; a purchase not bought has no ``purchase:`` transfer; every ``purchase:``
transfer belongs to the purchase that names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, aliased

from strongroom.funding import purchase_credit, topups
from strongroom.funding.models import Purchase, Topup
from strongroom.ledger.domain import TransferKind
from strongroom.ledger.models import Account, Transfer
from strongroom.ledger.service import OPERATOR, USER
from strongroom.settings import Settings

SANDBOX_NOTE: Final = "sandbox top-up"
STREAM_ROWS: Final = 1000
B = TypeVar("B")

BREAKS_MAX: Final = 10_000
"""The most breaks one report lists (the count goes on)."""


@dataclass(frozen=True, slots=True)
class Break:
    kind: str
    topup_id: str | None
    transfer_id: str | None
    detail: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "topup_id": self.topup_id,
            "transfer_id": self.transfer_id,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Breaks(Generic[B]):
    """A report's breaks: all counted, the first ``BREAKS_MAX`` listed (the payouts' report
    in ``withdrawals.reconcile`` keeps its breaks the same way)."""

    break_count: int = 0
    breaks: list[B] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.break_count == 0

    def add(self, found: B) -> None:
        self.break_count += 1
        if len(self.breaks) < BREAKS_MAX:
            self.breaks.append(found)


@dataclass(slots=True)
class Report(Breaks[Break]):
    confirmed_records: int = 0
    topup_transfers: int = 0
    sandbox_transfers: int = 0
    bought_purchases: int = 0
    purchase_transfers: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "confirmed_records": self.confirmed_records,
            "topup_transfers": self.topup_transfers,
            "sandbox_transfers": self.sandbox_transfers,
            "bought_purchases": self.bought_purchases,
            "purchase_transfers": self.purchase_transfers,
            "break_count": self.break_count,
            "breaks": [b.as_dict() for b in self.breaks],
        }


def reconcile(*, session: Session, settings: Settings) -> Report:
    report = Report()
    for found in _records_side(session, report):
        report.add(found)
    for found in _ledger_side(session, report, sandbox=settings.sandbox_enabled()):
        report.add(found)
    for found in _purchases_side(session, report):
        report.add(found)
    for found in _purchase_transfers_side(session, report):
        report.add(found)
    return report


def _records_side(session: Session, report: Report) -> Iterator[Break]:
    """Each confirmed record's transfer: there, of the amount received, to the right accounts;
    and no transfer for a record that is not confirmed."""
    debit = aliased(Account)
    credit = aliased(Account)
    rows = session.execute(
        select(
            Topup.id,
            Topup.user_id,
            Topup.status,
            Topup.asset,
            Topup.received_minor,
            Topup.transfer_id,
            Transfer.id.label("found_id"),
            Transfer.kind,
            Transfer.asset.label("transfer_asset"),
            Transfer.amount_minor,
            debit.owner_type.label("debit_owner"),
            debit.kind.label("debit_kind"),
            credit.owner_type.label("credit_owner"),
            credit.owner_id.label("credit_owner_id"),
            credit.kind.label("credit_kind"),
            Purchase.credit_transfer_id.label("bought_with"),
        )
        .outerjoin(Purchase, Purchase.topup_id == Topup.id)
        .outerjoin(
            Transfer,
            or_(
                Transfer.id == Topup.transfer_id,
                Transfer.id == topups.TRANSFER_PREFIX + Topup.id,
            ),
        )
        .outerjoin(debit, debit.id == Transfer.debit_account_id)
        .outerjoin(credit, credit.id == Transfer.credit_account_id)
        .where(or_(Topup.status == topups.CONFIRMED, Transfer.id.is_not(None)))
        .order_by(Topup.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        if row.status != topups.CONFIRMED:
            yield Break(
                "transfer_for_unconfirmed_topup",
                row.id,
                row.found_id,
                f"the top-up is {row.status} but the ledger credited it",
            )
            continue
        report.confirmed_records += 1
        if row.bought_with is not None:  # a purchase's payment: its legs are checked below
            if row.found_id is not None:
                yield Break(
                    "topup_transfer_for_bought_purchase",
                    row.id,
                    row.found_id,
                    "the payment bought crypto and was credited as a top-up too",
                )
            continue
        if row.found_id is None:
            yield Break(
                "missing_transfer", row.id, row.transfer_id, "confirmed, and no ledger transfer"
            )
            continue
        if row.found_id != row.transfer_id:
            yield Break(
                "transfer_id_mismatch", row.id, row.found_id, f"the record names {row.transfer_id}"
            )
        if row.amount_minor != row.received_minor or row.transfer_asset != row.asset:
            yield Break(
                "amount_mismatch",
                row.id,
                row.found_id,
                f"received {row.received_minor} {row.asset}, the ledger moved "
                f"{row.amount_minor} {row.transfer_asset}",
            )
        right_accounts = (
            row.kind == TransferKind.POSTED
            and (row.debit_owner, row.debit_kind) == (OPERATOR, topups.OMNIBUS)
            and (row.credit_owner, row.credit_owner_id, row.credit_kind)
            == (USER, row.user_id, "wallet")
        )
        if not right_accounts:
            yield Break(
                "account_mismatch",
                row.id,
                row.found_id,
                "not a posted transfer from the bank omnibus account to the user's wallet",
            )


def _ledger_side(session: Session, report: Report, *, sandbox: bool) -> Iterator[Break]:
    """Each top-up transfer's record: a confirmed one (a sandbox plain top-up has none)."""
    rows = session.execute(
        select(
            Transfer.id,
            Transfer.note,
            Transfer.amount_minor,
            Transfer.asset,
            Topup.id.label("topup_id"),
            Purchase.id.label("purchase_id"),
        )
        .outerjoin(Topup, Topup.transfer_id == Transfer.id)
        .outerjoin(Purchase, Purchase.credit_transfer_id == Transfer.id)
        .where(
            and_(
                Transfer.code == topups.TRANSFER_CODE,
                Transfer.kind == TransferKind.POSTED,
            )
        )
        .order_by(Transfer.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        if row.topup_id is not None:
            report.topup_transfers += 1
            continue
        if row.purchase_id is not None or row.id.startswith(purchase_credit.TRANSFER_PREFIX):
            continue  # a purchase's credit leg: ``_purchase_transfers_side`` checks it
        if sandbox and row.note == SANDBOX_NOTE and not row.id.startswith(topups.TRANSFER_PREFIX):
            report.sandbox_transfers += 1
            continue
        if row.id.startswith(topups.TRANSFER_PREFIX):
            report.topup_transfers += 1
            # a transfer named after a record that does not name it: the records side reports
            # it when that record exists; here only when it does not
            exists = session.get(Topup, row.id.removeprefix(topups.TRANSFER_PREFIX))
            if exists is not None:
                continue
        yield Break(
            "transfer_without_record",
            None,
            row.id,
            f"a top-up of {row.amount_minor} {row.asset} with no confirmed connector record",
        )


def _purchases_side(session: Session, report: Report) -> Iterator[Break]:
    """Each bought purchase's two legs: there, of its amounts, between the right accounts, and
    its payment a confirmed top-up of the amount paid."""
    pay, credit = aliased(Transfer), aliased(Transfer)
    pay_debit, pay_credit = aliased(Account), aliased(Account)
    credit_debit, credit_credit = aliased(Account), aliased(Account)
    rows = session.execute(
        select(
            Purchase,
            Topup.status.label("payment_status"),
            Topup.received_minor,
            pay.id.label("pay_id"),
            pay.asset.label("pay_transfer_asset"),
            pay.amount_minor.label("pay_amount"),
            pay_debit.kind.label("pay_from"),
            pay_credit.owner_type.label("pay_to_owner"),
            pay_credit.kind.label("pay_to"),
            credit.id.label("credit_id"),
            credit.asset.label("credit_transfer_asset"),
            credit.amount_minor.label("credit_amount"),
            credit_debit.owner_type.label("credit_from_owner"),
            credit_debit.kind.label("credit_from"),
            credit_credit.owner_type.label("credit_to_owner"),
            credit_credit.owner_id.label("credit_to_owner_id"),
            credit_credit.kind.label("credit_to"),
        )
        .join(Topup, Topup.id == Purchase.topup_id)
        .outerjoin(pay, pay.id == purchase_credit.TRANSFER_PREFIX + Purchase.id + ".pay")
        .outerjoin(credit, credit.id == purchase_credit.TRANSFER_PREFIX + Purchase.id + ".credit")
        .outerjoin(pay_debit, pay_debit.id == pay.debit_account_id)
        .outerjoin(pay_credit, pay_credit.id == pay.credit_account_id)
        .outerjoin(credit_debit, credit_debit.id == credit.debit_account_id)
        .outerjoin(credit_credit, credit_credit.id == credit.credit_account_id)
        .where(
            or_(
                Purchase.outcome == purchase_credit.BOUGHT,
                pay.id.is_not(None),
                credit.id.is_not(None),
            )
        )
        .order_by(Purchase.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        purchase: Purchase = row.Purchase
        if purchase.outcome != purchase_credit.BOUGHT:
            yield Break(
                "transfer_for_unbought_purchase",
                purchase.topup_id,
                row.pay_id or row.credit_id,
                f"purchase {purchase.id} is not bought but the ledger moved its legs",
            )
            continue
        report.bought_purchases += 1
        yield from _purchase_breaks(purchase, row)


def _purchase_breaks(purchase: Purchase, row: Any) -> Iterator[Break]:
    where = f"purchase {purchase.id}"
    if row.payment_status != topups.CONFIRMED or row.received_minor != purchase.pay_minor:
        yield Break(
            "payment_mismatch",
            purchase.topup_id,
            None,
            f"{where}: its payment is {row.payment_status}, received {row.received_minor}",
        )
    if row.pay_id is None or row.credit_id is None:
        yield Break(
            "missing_transfer",
            purchase.topup_id,
            row.pay_id or row.credit_id,
            f"{where} is bought and a leg is missing from the ledger",
        )
        return
    if (row.pay_id, row.credit_id) != (purchase.pay_transfer_id, purchase.credit_transfer_id):
        yield Break("transfer_id_mismatch", purchase.topup_id, row.pay_id, f"{where} names others")
    amounts = (row.pay_transfer_asset, row.pay_amount, row.credit_transfer_asset, row.credit_amount)
    if amounts != (purchase.pay_asset, purchase.pay_minor, purchase.asset, purchase.amount_minor):
        yield Break(
            "amount_mismatch",
            purchase.topup_id,
            row.credit_id,
            f"{where}: paid {purchase.pay_minor} {purchase.pay_asset} for "
            f"{purchase.amount_minor} {purchase.asset}, the ledger moved {amounts}",
        )
    accounts = (
        row.pay_from,
        row.pay_to_owner,
        row.pay_to,
        row.credit_from_owner,
        row.credit_from,
        row.credit_to_owner,
        row.credit_to_owner_id,
        row.credit_to,
    )
    expected = (
        topups.OMNIBUS,
        OPERATOR,
        purchase_credit.FX_ACCOUNT,
        OPERATOR,
        purchase_credit.FX_ACCOUNT,
        USER,
        purchase.user_id,
        "wallet",
    )
    if accounts != expected:
        yield Break(
            "account_mismatch",
            purchase.topup_id,
            row.credit_id,
            f"{where}: not omnibus -> FX account, FX account -> the user's wallet",
        )


def _purchase_transfers_side(session: Session, report: Report) -> Iterator[Break]:
    """Each ``purchase:`` transfer in the ledger belongs to the purchase that names it."""
    rows = session.execute(
        select(Transfer.id, Transfer.amount_minor, Transfer.asset, Purchase.id.label("owner"))
        .outerjoin(
            Purchase,
            or_(
                Purchase.pay_transfer_id == Transfer.id, Purchase.credit_transfer_id == Transfer.id
            ),
        )
        .where(Transfer.id.startswith(purchase_credit.TRANSFER_PREFIX))
        .order_by(Transfer.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        report.purchase_transfers += 1
        if row.owner is None:
            yield Break(
                "transfer_without_record",
                None,
                row.id,
                f"a purchase leg of {row.amount_minor} {row.asset} that no purchase names",
            )
