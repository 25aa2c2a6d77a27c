from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom import db
from strongroom.api import (
    AssetsDep,
    LedgerKeyDep,
    RowIdPath,
    SessionDep,
    SettingsDep,
    UserDep,
    operator_with,
)
from strongroom.api.batch_body import ITEMS, BatchItem
from strongroom.errors import DomainError, InvalidAmount
from strongroom.identity.models import User
from strongroom.ledger import reports, service
from strongroom.ledger.domain import Balance, TransferKind, TransferSpec
from strongroom.ledger.models import Account
from strongroom.ledger.schemas import (
    AccountIn,
    AccountOut,
    BalanceOut,
    BalancesOut,
    BatchIn,
    BatchOut,
    Counterparty,
    TransactionOut,
    TransactionsOut,
    TransferIn,
    Unlock,
)
from strongroom.money import AssetRegistry, format_amount, parse_amount

router = APIRouter(prefix="/v1", tags=["ledger"])
LimitQuery = Annotated[int | None, Query(ge=1)]


@router.get("/balances")
def balances(user: UserDep, session: SessionDep, registry: AssetsDep) -> BalancesOut:
    return BalancesOut(
        balances=[
            balance_out(held, registry)
            for held in service.wallet_balances(session=session, user_id=user.id)
        ]
    )


def balance_out(held: Balance, registry: AssetRegistry) -> BalanceOut:
    scale = registry.get(held.asset).scale
    return BalanceOut(
        asset=held.asset,
        total=format_amount(held.total_minor, scale),
        available=format_amount(held.available_minor, scale),
        pending=format_amount(held.pending_minor, scale),
        locked=format_amount(held.locked_minor, scale),
        unlocks=[
            Unlock(amount=format_amount(lot.amount_minor, scale), at=lot.at) for lot in held.unlocks
        ],
    )


@router.get("/transactions")
def transactions(
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    cursor: str | None = None,
    limit: LimitQuery = None,
) -> TransactionsOut:
    size = min(limit or settings.ledger.page_size_default, settings.ledger.page_size_max)
    ids = [
        a.id
        for a in service.accounts_of(
            session=session, owner_type="user", owner_id=user.id, kind="wallet"
        )
    ]
    page = reports.statement(session=session, account_ids=ids, cursor=cursor, limit=size)
    parties = _counterparties(session, {line.counterparty_account_id for line in page.lines})
    items = [_transaction(line, registry, parties) for line in page.lines]
    return TransactionsOut(items=items, next_cursor=page.next_cursor)


@router.get(
    "/transactions.csv",
    response_class=Response,
    responses={
        200: {
            "description": "The wallet's history as CSV (an attachment, `history.csv`)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
def transactions_csv(
    user: UserDep, session: SessionDep, settings: SettingsDep, registry: AssetsDep
) -> StreamingResponse:
    ids = [
        a.id
        for a in service.accounts_of(
            session=session, owner_type="user", owner_id=user.id, kind="wallet"
        )
    ]
    scales = {asset.code: asset.scale for asset in registry.all()}
    chunks = list(
        reports.statement_csv(
            session=session,
            account_ids=ids,
            scales=scales,
            max_rows=settings.ledger.export_rows_max,
        )
    )
    return StreamingResponse(
        iter(chunks),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="history.csv"'},
    )


def _counterparties(session: Session, account_ids: set[int]) -> dict[int, Counterparty]:
    if not account_ids:
        return {}
    accounts = session.execute(
        select(Account.id, Account.owner_type, Account.owner_id, Account.kind).where(
            Account.id.in_(account_ids)
        )
    ).all()
    user_ids = [a.owner_id for a in accounts if a.owner_type == "user"]
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(user_ids))).all())
    parties = {}
    for account in accounts:
        if account.owner_type == "user":
            parties[account.id] = Counterparty(
                type="user", id=account.owner_id, name=names.get(account.owner_id)
            )
        else:
            parties[account.id] = Counterparty(type=account.owner_type, name=account.kind)
    return parties


def _transaction(
    line: reports.StatementLine, registry: AssetRegistry, parties: dict[int, Counterparty]
) -> TransactionOut:
    scale = registry.get(line.asset).scale
    status = (
        "pending"
        if line.kind == TransferKind.PENDING
        else ("voided" if line.kind == TransferKind.VOID_PENDING else "posted")
    )
    return TransactionOut(
        id=str(line.entry_id),
        transfer_id=line.transfer_id,
        type=line.code,
        kind=line.kind,
        direction="in" if line.side == "C" else "out",
        status=status,
        asset=line.asset,
        amount=format_amount(line.posted_minor or abs(line.pending_minor), scale),
        pending_change=format_amount(line.pending_minor, scale),
        balance_after=format_amount(line.balance_after, scale),
        counterparty=parties.get(line.counterparty_account_id, Counterparty(type="unknown")),
        note=line.note,
        created_at=line.created_at,
    )


# --------------------------------------------------------------------------- the raw ledger
#
# R-SEC-10: its writes serve integrations, not people: a service key with the ``ledger`` scope
# (``X-Api-Key``, ``strongroom admin create-api-key --scope ledger --name N``); a person's token
# is refused (403 ``service_key_required``), whatever the role: operators move money by hand
# through maker-checker adjustments (``api/adjustments.py``). Its reads are for the roles that
# hold ``balances`` (finance, admin).

BalancesReaderDep = Annotated[User, operator_with("balances")]
KEY_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "no service key (`api_key_required`), or not a live one (`invalid_api_key`)"
    },
    403: {
        "description": "a bearer token instead of a key (`service_key_required`: these routes "
        "are for integrations, whatever the person's role), or a key of another scope "
        "(`insufficient_scope`)"
    },
}
READER_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid token (`unauthorized`, `invalid_token`, `token_expired`)"},
    403: {
        "description": "not an operator whose role holds `balances` (finance, admin): "
        "`forbidden`; an operator without 2FA: `two_factor_required`"
    },
    404: {"description": "`account_not_found`"},
}


@router.post(
    "/admin/ledger/transfers",
    tags=["operator"],
    response_model=BatchOut,
    responses={
        **KEY_REFUSALS,
        400: {
            "description": "`batch_too_large` (`details.max`), `validation_error` (a `kind` "
            "that is not one of the four), `malformed_json`"
        },
        422: {
            "description": "`invalid_amount`, `unknown_asset`, `validation_error`; a "
            "transfer's own refusal is in its result, not the status"
        },
    },
)
def batch(
    body: BatchIn,
    request: Request,
    service_key: LedgerKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
) -> JSONResponse:
    """Post many transfers in one request (bounded); ``linked`` groups are all or nothing.
    Idempotent through transfer ids: a replayed id with the same fields reports ``exists``."""
    # Read by batch_body.BatchBody when every item is plain (the body is then an empty batch)
    items: Sequence[TransferIn | BatchItem] = request.scope.get(ITEMS) or body.transfers
    if len(items) > settings.ledger.batch_max_transfers:
        raise DomainError(
            f"a batch holds at most {settings.ledger.batch_max_transfers} transfers",
            code="batch_too_large",
            max=settings.ledger.batch_max_transfers,
        )
    amounts: dict[tuple[str, str], int] = {}  # a batch repeats few (asset, amount) pairs
    specs = [_spec(item, registry, amounts) for item in items]
    results = service.create_transfers(session=session, specs=specs, limits=settings.ledger)
    # Committed here, in this thread, before the answer is built: the batch holds the locks of
    # nearly every account it names until its commit, and concurrent batches wait for them.
    # Left to the session dependency, the commit would come after the 8,000 results are
    # turned into JSON and a hop through the event loop back to the thread pool (issue #14).
    db.finish(session, None)
    # Up to 8,000 results: written as plain JSON, not as a BatchOut of TransferResultOut models
    # that FastAPI would check and convert again (the schema stays BatchOut, response_model).
    out = [
        {
            "index": r.index,
            "id": r.id,
            "status": r.status,
            "error": None
            if r.error is None
            else {"code": r.error.code, "message": r.error.message, "details": r.error.details},
        }
        for r in results
    ]
    failed = sum(1 for r in results if r.status == "failed")
    created = sum(1 for r in results if r.status == "created")
    return JSONResponse({"results": out, "created": created, "failed": failed})


_KINDS = {kind.value: kind for kind in TransferKind}  # a dict look-up, not an Enum call per item


def _spec(
    item: TransferIn | BatchItem,
    registry: AssetRegistry,
    amounts: dict[tuple[str, str], int] | None = None,
) -> TransferSpec:
    """The ledger's spec of one item. ``amounts`` remembers the minor units of each (asset,
    amount) pair already parsed in this request (only ones that parsed: a bad one raises)."""
    kind = _KINDS.get(item.kind)
    if kind is None:
        raise DomainError(
            f"kind must be one of {[k.value for k in TransferKind]}", code="validation_error"
        )
    amount_minor = None
    if item.amount is not None:
        if item.asset is None:
            raise InvalidAmount("an amount needs its asset")
        text = item.amount if isinstance(item.amount, str) else None  # JSON text is hashable
        found = amounts.get((item.asset, text)) if amounts is not None and text else None
        if found is None:
            found = parse_amount(item.amount, registry.get(item.asset).scale)
            if amounts is not None and text:
                amounts[(item.asset, text)] = found
        amount_minor = found
    elif kind in (TransferKind.POSTED, TransferKind.PENDING):
        raise InvalidAmount("amount is required")
    if item.asset is not None:
        registry.get(item.asset)
    return TransferSpec(
        kind=kind,
        debit_account_id=item.debit_account_id,
        credit_account_id=item.credit_account_id,
        asset=item.asset,
        amount_minor=amount_minor,
        id=item.id,
        pending_id=item.pending_id,
        timeout_s=item.timeout_s,
        code=item.code,
        note=item.note,
        linked=item.linked,
    )


@router.post(
    "/admin/ledger/accounts",
    status_code=201,
    tags=["operator"],
    responses={
        **KEY_REFUSALS,
        422: {
            "description": "`user_account_may_not_go_negative` (a `user` account with "
            "`allow_negative`: nothing is written), `unknown_asset`, `validation_error`"
        },
    },
)
def create_account(
    body: AccountIn, service_key: LedgerKeyDep, session: SessionDep, registry: AssetsDep
) -> AccountOut:
    """The account of (owner, kind, asset), made if missing. A user's account never goes
    negative: ``allow_negative`` on a ``user`` account is refused, for every caller."""
    registry.get(body.asset)
    account = service.ensure_account(
        session=session,
        owner_type=body.owner_type,
        owner_id=body.owner_id,
        kind=body.kind,
        asset=body.asset,
        allow_negative=body.allow_negative,
    )
    return _account_out(account, registry, service.balance(session=session, account_id=account.id))


@router.get("/admin/ledger/accounts/{account_id}", tags=["operator"], responses=READER_REFUSALS)
def get_account(
    account_id: RowIdPath, operator: BalancesReaderDep, session: SessionDep, registry: AssetsDep
) -> AccountOut:
    account = service.get_account(session=session, account_id=account_id)
    return _account_out(account, registry, service.balance(session=session, account_id=account_id))


@router.get(
    "/admin/ledger/accounts/{account_id}/statement",
    tags=["operator"],
    responses={
        **READER_REFUSALS,
        422: {"description": "`invalid_cursor`, `validation_error`"},
    },
)
def account_statement(
    account_id: RowIdPath,
    operator: BalancesReaderDep,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    cursor: str | None = None,
    limit: LimitQuery = None,
) -> TransactionsOut:
    service.get_account(session=session, account_id=account_id)
    size = min(limit or settings.ledger.page_size_default, settings.ledger.page_size_max)
    page = reports.statement(session=session, account_ids=[account_id], cursor=cursor, limit=size)
    parties = _counterparties(session, {line.counterparty_account_id for line in page.lines})
    return TransactionsOut(
        items=[_transaction(line, registry, parties) for line in page.lines],
        next_cursor=page.next_cursor,
    )


def _account_out(account: Account, registry: AssetRegistry, held: Balance) -> AccountOut:
    scale = registry.get(account.asset).scale
    return AccountOut(
        id=account.id,
        owner_type=account.owner_type,
        owner_id=account.owner_id,
        kind=account.kind,
        asset=account.asset,
        allow_negative=account.allow_negative,
        total=format_amount(held.total_minor, scale),
        available=format_amount(held.available_minor, scale),
        locked=format_amount(held.locked_minor, scale),
        debits_posted=format_amount(account.debits_posted, scale),
        credits_posted=format_amount(account.credits_posted, scale),
        debits_pending=format_amount(account.debits_pending, scale),
        credits_pending=format_amount(account.credits_pending, scale),
    )
