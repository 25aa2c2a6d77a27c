"""History with "load more", and the receipt of one transaction (issue #5).

History is the statement of the user's wallets (``ledger.reports.statement``, newest first,
cursor-paged: what ``GET /v1/transactions`` reads), one row per entry: what it was, with whom,
the amount signed and formatted for the user's language and the asset's scale, and the balance
after it. "Load more" is a link to the next page (``/app/history?cursor=...``); with htmx it
fetches only the next rows (``/app/history/rows``) and puts them in place of itself, so the
list grows; without JavaScript the link opens that page.

A receipt (``/app/receipts/<transfer id>``) is where a top-up or a transfer lands after its
form; it shows a transfer only to a user whose wallet it moved money in or out of, and answers
404 to anyone else, exactly as for a transfer that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from strongroom.api import AssetsDep, SessionDep, SettingsDep
from strongroom.errors import NotFound
from strongroom.identity.models import User
from strongroom.ledger import reports
from strongroom.ledger import service as ledger
from strongroom.ledger.domain import TransferKind
from strongroom.ledger.models import Account
from strongroom.merchants import charges
from strongroom.merchants import portal as merchant_portal
from strongroom.merchants import service as merchants_service
from strongroom.money import AssetRegistry
from strongroom.settings import Settings
from strongroom.web import core
from strongroom.web.i18n import N_, Lang, lang_of
from strongroom.web.lite.layout import PREFIX, page
from strongroom.web.sessions import SignedIn, SignedInDep

router = APIRouter(prefix=PREFIX)
PATH: Final = "/app/history"
ROWS_PATH: Final = "/app/history/rows"
RECEIPTS: Final = "/app/receipts/"
PAGE_SIZE: Final = 20
CursorQuery = Annotated[str | None, Query(max_length=32)]
TITLES: Final = {
    "topup": N_("Top-up"),
    "p2p_out": N_("Sent to %(name)s"),
    "p2p_in": N_("Received from %(name)s"),
    "merchant_out": N_("Paid to %(name)s"),
    "merchant_in": N_("Refund from %(name)s"),
    "out": N_("Money out"),
    "in": N_("Money in"),
}
MERCHANT: Final = merchants_service.OWNER_TYPE
"""The owner type of a merchant's account (a payment to a shop names the shop)."""
STATUSES: Final = {"pending": N_("Pending"), "voided": N_("Cancelled")}


def receipt_path(transfer_id: str) -> str:
    return RECEIPTS + quote(transfer_id, safe="")


@dataclass(frozen=True, slots=True)
class Row:
    """One movement of the user's money, ready to show."""

    transfer_id: str
    title: str
    note: str | None
    direction: str  # "in" or "out"
    amount: str  # signed, formatted
    asset: str
    balance_after: str | None
    when: str
    status: str | None  # a translated word for pending or cancelled; None when done
    receipt: str


def _names(session: Session, account_ids: set[int]) -> dict[int, tuple[str, str | None]]:
    """Each account's owner type and, for a user, their name (as the API's ``counterparty``)."""
    if not account_ids:
        return {}
    accounts = session.execute(
        select(Account.id, Account.owner_type, Account.owner_id).where(Account.id.in_(account_ids))
    ).all()
    user_ids = [a.owner_id for a in accounts if a.owner_type == "user"]
    names = dict(session.execute(select(User.id, User.name).where(User.id.in_(user_ids))).all())
    shops = {a.owner_id for a in accounts if a.owner_type == MERCHANT}
    names.update(merchant_portal.names(session=session, merchant_ids=shops))
    return {a.id: (a.owner_type, names.get(a.owner_id)) for a in accounts}


SHOP_CODES: Final = frozenset({"merchant_payment", "merchant_refund"})


def _shop_of(code: str, note: str | None) -> str | None:
    """The shop a payment or refund leg is for: its note is ``<merchant id> <charge id>``
    (``merchants.charges``). A cross-border leg's other side is an FX account, so the shop is
    read from the note, not from the counterparty."""
    if code not in SHOP_CODES or not note:
        return None
    return note.split(" ", 1)[0]


def _shops(
    session: Session, lines: list[tuple[str, str | None]]
) -> dict[str | None, tuple[str, str | None]]:
    ids = {shop for code, note in lines if (shop := _shop_of(code, note)) is not None}
    names = merchant_portal.names(session=session, merchant_ids=ids)
    return {merchant_id: (MERCHANT, name) for merchant_id, name in names.items()}


def _title(lang: Lang, code: str, direction: str, party: tuple[str, str | None] | None) -> str:
    if code == "topup":
        return lang.gettext(TITLES["topup"])
    if code == "p2p" and party is not None and party[1] is not None:
        return lang.gettext(TITLES[f"p2p_{direction}"]) % {"name": party[1]}
    if party is not None and party[0] == MERCHANT and party[1] is not None:
        return lang.gettext(TITLES[f"merchant_{direction}"]) % {"name": party[1]}
    return lang.gettext(TITLES[direction])


def _signed(lang: Lang, direction: str, amount_minor: int, scale: int) -> str:
    return ("+" if direction == "in" else "\u2212") + lang.amount(amount_minor, scale)


def _status(lang: Lang, kind: str) -> str | None:
    if kind == TransferKind.PENDING:
        return lang.gettext(STATUSES["pending"])
    if kind == TransferKind.VOID_PENDING:
        return lang.gettext(STATUSES["voided"])
    return None


def _wallet_ids(session: Session, user: User) -> list[int]:
    return [
        account.id
        for account in ledger.accounts_of(
            session=session, owner_type="user", owner_id=user.id, kind="wallet"
        )
    ]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    rows: list[Row]
    next_cursor: str | None
    more_url: str | None
    more_rows_url: str | None


def history_page(
    *,
    session: Session,
    user: User,
    registry: AssetRegistry,
    lang: Lang,
    cursor: str | None,
    limit: int,
) -> HistoryPage:
    """One page of the user's statement, newest first, formatted for ``lang``."""
    statement = reports.statement(
        session=session, account_ids=_wallet_ids(session, user), cursor=cursor, limit=limit
    )
    parties = _names(session, {line.counterparty_account_id for line in statement.lines})
    shops = _shops(session, [(line.code, line.note) for line in statement.lines])
    rows = []
    for line in statement.lines:
        direction = "in" if line.side == "C" else "out"
        scale = registry.get(line.asset).scale
        amount_minor = line.posted_minor or abs(line.pending_minor)
        party = shops.get(_shop_of(line.code, line.note)) or parties.get(
            line.counterparty_account_id
        )
        rows.append(
            Row(
                transfer_id=line.transfer_id,
                title=_title(lang, line.code, direction, party),
                note=line.note if line.code == "p2p" else None,
                direction=direction,
                amount=_signed(lang, direction, amount_minor, scale),
                asset=line.asset,
                balance_after=lang.amount(line.balance_after, scale),
                when=lang.when(line.created_at),
                status=_status(lang, line.kind),
                receipt=receipt_path(line.transfer_id),
            )
        )
    more = statement.next_cursor
    query = urlencode({"cursor": more}) if more else ""
    return HistoryPage(
        rows=rows,
        next_cursor=more,
        more_url=f"{PATH}?{query}" if more else None,
        more_rows_url=f"{ROWS_PATH}?{query}" if more else None,
    )


def _rows(
    user: SignedIn,
    request: Request,
    session: Session,
    settings: Settings,
    registry: AssetRegistry,
    cursor: str | None,
) -> HistoryPage:
    """The page of rows after ``cursor`` that both the page and its htmx rows answer."""
    return history_page(
        session=session,
        user=user.user,
        registry=registry,
        lang=lang_of(request),
        cursor=cursor,
        limit=min(PAGE_SIZE, settings.ledger.page_size_max),
    )


@router.get("/history", response_class=HTMLResponse)
def history(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    cursor: CursorQuery = None,
) -> HTMLResponse:
    """The newest rows, or (a plain "load more" link without JavaScript) the rows after
    ``cursor``."""
    found = _rows(user, request, session, settings, registry, cursor)
    return page(
        request,
        "lite/history.html",
        {"history": found, "from_cursor": cursor is not None},
        user=user,
        current=PATH,
    )


@router.get("/history/rows", response_class=HTMLResponse)
def history_rows(
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    registry: AssetsDep,
    cursor: CursorQuery = None,
) -> HTMLResponse:
    """The next rows alone, and the next "load more" (htmx swaps them in for the old one)."""
    found = _rows(user, request, session, settings, registry, cursor)
    return core.render(request, "lite/_history_rows.html", {"history": found})


# --------------------------------------------------------------------------- receipts


@dataclass(frozen=True, slots=True)
class RefundLine:
    amount: str  # what came back to the payer, in their currency
    asset: str
    when: str
    receipt: str


@dataclass(frozen=True, slots=True)
class ShopPart:
    """A payment to a shop (or a refund of one) on its payer's receipt: the shop, what it
    charged in its currency (and the rate, cross-border), the refunds against the payment. Never
    the shop's fee: that is between the shop and us."""

    merchant: str
    city: str
    charged: str | None  # cross-border: the amount in the shop's currency; None otherwise
    charged_asset: str
    fx_rate: str | None
    refunds: list[RefundLine]
    payment: str | None  # on a refund's receipt: the receipt of the payment it returns


@dataclass(frozen=True, slots=True)
class Receipt:
    transfer_id: str
    title: str
    direction: str
    amount: str
    asset: str
    note: str | None
    when: str
    status: str | None
    shop: ShopPart | None = None


def _shop_part(
    session: Session, user: User, registry: AssetRegistry, lang: Lang, transfer_id: str
) -> ShopPart | None:
    paid = charges.paid_by(session=session, user=user, transfer_id=transfer_id)
    if paid is None:
        return None
    row = paid.charge
    payer_scale = registry.get(row.payer_asset).scale
    cross_border = row.payer_asset != row.asset
    return ShopPart(
        merchant=paid.merchant.name,
        city=paid.merchant.city,
        charged=lang.amount(row.amount_minor, registry.get(row.asset).scale)
        if cross_border
        else None,
        charged_asset=row.asset,
        fx_rate=row.fx_rate,
        refunds=[
            RefundLine(
                amount=lang.amount(refund.payer_amount_minor, payer_scale),
                asset=row.payer_asset,
                when=lang.when(refund.created_at),
                receipt=receipt_path(refund.transfer_id),
            )
            for refund in paid.refunds
        ],
        payment=receipt_path(row.transfer_id) if paid.refund is not None else None,
    )


def receipt_of(
    *, session: Session, user: User, registry: AssetRegistry, lang: Lang, transfer_id: str
) -> Receipt:
    """The transfer as the user sees it; ``NotFound`` unless it moved their money."""
    transfer = ledger.transfer_by_id(session=session, transfer_id=transfer_id)
    wallets = set(_wallet_ids(session, user))
    if transfer.credit_account_id in wallets:
        direction, other = "in", transfer.debit_account_id
    elif transfer.debit_account_id in wallets:
        direction, other = "out", transfer.credit_account_id
    else:
        raise NotFound(f"transfer {transfer_id} does not exist", code="transfer_not_found")
    scale = registry.get(transfer.asset).scale
    created: datetime = transfer.created_at
    shop = _shop_part(session, user, registry, lang, transfer.id)
    party = (MERCHANT, shop.merchant) if shop is not None else _names(session, {other}).get(other)
    return Receipt(
        transfer_id=transfer.id,
        title=_title(lang, transfer.code, direction, party),
        direction=direction,
        amount=_signed(lang, direction, transfer.amount_minor, scale),
        asset=transfer.asset,
        note=transfer.note if transfer.code == "p2p" else None,
        when=lang.when(created),
        status=_status(lang, transfer.kind),
        shop=shop,
    )


@router.get("/receipts/{transfer_id}", response_class=HTMLResponse)
def receipt(
    transfer_id: Annotated[str, Path(max_length=64)],
    user: SignedInDep,
    request: Request,
    session: SessionDep,
    registry: AssetsDep,
) -> HTMLResponse:
    shown = receipt_of(
        session=session,
        user=user.user,
        registry=registry,
        lang=lang_of(request),
        transfer_id=transfer_id,
    )
    return page(request, "lite/receipt.html", {"receipt": shown}, user=user, current=PATH)
