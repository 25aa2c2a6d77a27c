"""The public proof-of-reserves pages (R-POR-3, R-POR-4), server-rendered with Jinja2.

``/reserves`` lists the published audits, newest first: root, leaf count, liabilities, reserves
and the reserve ratio per asset. ``/reserves/verify`` is where a user checks their inclusion
proof: the page's JavaScript (``static/reserves/por_v1.js``) verifies a strongroom-por-v1 proof
in the browser with Web Crypto, exactly as ``strongroom_verify.por_v1`` does offline, and
compares its root with the published one. The server only renders and serves files; nothing
here reads a proof.

Every page is sent with a strict Content-Security-Policy: scripts and styles come only from
``/static`` (no inline script or style, no CDN), and no page can be framed. The Jinja2
environment, ``static_url()`` and the headers are the web layer's (``strongroom.web.core``);
the pages extend ``web/base.html`` and use the shared ``base.css`` (``reserves.css`` adds only
what shows audits and proofs).

**Languages** are the web layer's (``strongroom.web.i18n``): the ``lang`` cookie, else
Accept-Language, and its visible switch (a POST with CSRF to ``/app/language``, which sends the
browser back here). The strings are the ``reserves`` catalog domain: the templates' and the
scripts' (``N_('...')`` calls in ``verify.js`` and ``por_v1.js``, found by Babel's javascript
extractor, as ``pybabel extract`` finds them with ``web/babel-reserves.cfg``). The verify page
renders their translations and the locale's number symbols into a JSON block
(``<script type="application/json">``: data, never run, so the CSP allows it) that
``verify.js`` reads. Amounts are formatted from their exact decimal text (``Lang.amount``, never
a float), times with ``Lang.when`` (Hong Kong time), days with Babel. The pages vary with the
language and carry the switch's CSRF token, so they are sent ``private, no-cache`` with
``Vary: Accept-Language, Cookie``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final

from babel.dates import format_date
from babel.messages.extract import extract
from babel.numbers import get_decimal_symbol, get_group_symbol
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse

from strongroom.api import SessionDep, SettingsDep
from strongroom.api.reserves import mint_proof_token
from strongroom.db import utcnow
from strongroom.errors import NotFound
from strongroom.reserves import service
from strongroom.reserves.audit import parse_utc
from strongroom.reserves.models import PorAudit
from strongroom.web import i18n, sessions
from strongroom.web.core import render

LISTED_AUDITS = 50
MAX_AUDIT_ID_CHARS = 64  # por_audits.audit_id is a String(64)
DOMAIN: Final = "reserves"
"""The catalog domain of these pages' strings (``web/locale/<language>/LC_MESSAGES``)."""
STATIC_DIRECTORY: Final = Path(__file__).parent.parent / "static"
"""The web layer's static folder; these pages' files are under ``reserves/`` in it."""
SCRIPTS: Final = ("reserves/por_v1.js", "reserves/verify.js")
"""The scripts whose ``N_('...')`` messages the verify page translates for them."""
SCRIPT_KEYWORDS: Final = {"N_": None}
SCRIPT_OPTIONS: Final = {"parse_template_string": True}
CACHE_CONTROL: Final = "private, no-cache"
VARY: Final = "Accept-Language, Cookie"
SIGN_IN_URL: Final = "/app/signin?next=/reserves/verify"
"""The Lite app's sign-in, coming back here (the verify page has no password form of its own)."""
DECIMAL_TEXT: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?")

router = APIRouter(tags=["pages"], include_in_schema=False)


def decimal_text(lang: i18n.Lang, text: str) -> str:
    """An exact decimal (``"1234.50"``, as the audit stores amounts and ratios) in ``lang``'s
    format (``"1,234.50"``), through ``Lang.amount``: every digit kept, no float; anything that
    is not a plain decimal is shown as it is."""
    match = DECIMAL_TEXT.fullmatch(text)
    if match is None:
        return text
    whole, fraction = match.group(1), match.group(2) or ""
    return lang.amount(int(whole + fraction), len(fraction))


def day_text(lang: i18n.Lang, day: date) -> str:
    """A day in ``lang``'s medium format: ``Dec 1, 2026``, ``2026年12月1日``."""
    return format_date(day, "medium", locale=lang.locale)


@dataclass(frozen=True, slots=True)
class AssetRow:
    code: str
    liabilities: str
    reserves: str
    ratio: str | None
    liabilities_text: str
    reserves_text: str
    ratio_text: str | None

    @property
    def covered(self) -> bool:
        """Reserves at least cover liabilities (no liabilities counts as covered)."""
        return self.ratio is None or Decimal(self.ratio) >= 1


@dataclass(frozen=True, slots=True)
class AuditView:
    audit_id: str
    created_at: str
    root: str
    leaf_count: int
    assets: list[AssetRow]
    sources: list[dict[str, Any]]
    created_text: str
    """When it was taken, in the page's language and Hong Kong time (``Lang.when``)."""
    leaf_count_text: str


def _audit_view(lang: i18n.Lang, summary: dict[str, Any]) -> AuditView:
    totals: dict[str, str] = summary["totals"]
    assets = []
    for code, reserves in summary["reserves"].items():
        liabilities, ratio = totals.get(code, "0"), summary["ratios"].get(code)
        assets.append(
            AssetRow(
                code=code,
                liabilities=liabilities,
                reserves=reserves,
                ratio=ratio,
                liabilities_text=decimal_text(lang, liabilities),
                reserves_text=decimal_text(lang, reserves),
                ratio_text=None if ratio is None else decimal_text(lang, ratio),
            )
        )
    sources = [
        {
            **source,
            "amount": decimal_text(lang, source["amount"]),
            "as_of": day_text(lang, date.fromisoformat(source["as_of"])),
        }
        for source in summary["sources"]
    ]
    return AuditView(
        audit_id=summary["audit_id"],
        created_at=summary["created_at"],
        root=summary["root"],
        leaf_count=summary["leaf_count"],
        assets=assets,
        sources=sources,
        created_text=lang.when(parse_utc(summary["created_at"])),
        leaf_count_text=lang.amount(summary["leaf_count"], 0),
    )


@lru_cache(maxsize=1)
def script_messages() -> tuple[str, ...]:
    """Every msgid the scripts mark with ``N_('...')``, in order, found as ``pybabel extract``
    finds them (Babel's javascript extractor)."""
    found: dict[str, None] = {}
    for name in SCRIPTS:
        with (STATIC_DIRECTORY / name).open("rb") as source:
            for _line, message, _comments, _context in extract(
                "javascript", source, keywords=SCRIPT_KEYWORDS, options=SCRIPT_OPTIONS
            ):
                found[message if isinstance(message, str) else message[0]] = None
    return tuple(found)


@lru_cache(maxsize=len(i18n.LANGUAGES))
def script_i18n(code: str) -> dict[str, Any]:
    """What ``verify.js`` needs in the language ``code``: each of its messages translated, and
    the locale's number symbols, grouping and list separator (for exact amounts and lists)."""
    lang = i18n.lang_for(code)
    primary, secondary = lang.locale.decimal_formats[None].grouping
    middle: str = lang.locale.list_patterns["standard"]["middle"]
    return {
        "messages": {message: lang.gettext(message) for message in script_messages()},
        "group": get_group_symbol(lang.locale),
        "decimal": get_decimal_symbol(lang.locale),
        "grouping": [primary, secondary],
        "separator": middle.replace("{0}", "").replace("{1}", ""),
    }


def _page(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    """A page in the request's language, with the language switch's CSRF token."""
    response = render(request, template, context, cache_control=CACHE_CONTROL)
    response.headers["Vary"] = VARY
    return response


def _taken(lang: i18n.Lang, row: PorAudit) -> str | None:
    """When an audit was taken, for its entry in the list of audits; None where its id already
    says the day (an id like ``2026-12-01`` taken that UTC day)."""
    moment = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    if moment.astimezone(UTC).strftime("%Y-%m-%d") == row.audit_id:
        return None
    return lang.when(moment)


@router.get("/reserves", response_class=HTMLResponse)
def reserves_page(request: Request, session: SessionDep) -> HTMLResponse:
    """Every published audit (the latest ``LISTED_AUDITS``), newest first."""
    lang = i18n.lang_of(request)
    rows = service.recent(session=session, limit=LISTED_AUDITS)
    audits = [_audit_view(lang, service.summary(session=session, audit=row)) for row in rows]
    return _page(
        request,
        "reserves/index.html",
        {"audits": audits, "listed_max": LISTED_AUDITS, "page": "reserves"},
    )


@router.get("/reserves/verify", response_class=HTMLResponse)
def verify_page(request: Request, session: SessionDep, audit: str | None = None) -> HTMLResponse:
    """Verify a proof in the browser: fetched for the signed-in user, or dropped as a file."""
    rows: list[PorAudit] = service.recent(session=session, limit=LISTED_AUDITS)
    if audit is not None and all(row.audit_id != audit for row in rows):
        try:  # an older audit than the listed ones: offer it too
            if len(audit) > MAX_AUDIT_ID_CHARS:
                raise NotFound("not an audit id")
            rows.append(service.get_audit(session=session, audit_id=audit))
        except NotFound:
            audit = None  # unknown: fall back to the latest
    selected = audit if audit is not None else (rows[0].audit_id if rows else None)
    lang = i18n.lang_of(request)
    signed_in = sessions.optional_user(request, session)
    return _page(
        request,
        "reserves/verify.html",
        {
            "audits": [(row.audit_id, _taken(lang, row)) for row in rows],
            "selected": selected,
            "page": "verify",
            "script_i18n": script_i18n(lang.code),
            "signed_in_as": signed_in.user.email if signed_in is not None else None,
            "sign_in_url": SIGN_IN_URL,
        },
    )


@router.post("/reserves/proof-token")
def proof_token(
    audit_id: Annotated[str, Form(min_length=1, max_length=MAX_AUDIT_ID_CHARS)],
    user: sessions.SignedInDep,
    session: SessionDep,
    settings: SettingsDep,
) -> JSONResponse:
    """For the verify page's script: a proof-only token (``api.reserves``) for the signed-in
    browser's proof in one audit, valid minutes. The session cookie stays HttpOnly; the script
    never holds a credential that can do more (CSRF-checked, as every POST here)."""
    row = service.get_audit(session=session, audit_id=audit_id)
    minted = mint_proof_token(settings, user_id=user.user.id, audit_id=row.audit_id, now=utcnow())
    return JSONResponse(
        minted.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"}
    )
