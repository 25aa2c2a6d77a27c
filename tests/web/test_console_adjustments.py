"""The console under the one role table (R-SEC-10), and its maker-checker screen.

Every console route, found from the running app (so a screen added later is covered), is walked
with an operator of every role, a signed-in user who is not an operator and a stranger: a role
in the table's row for the route's screen is let through, every other is refused with the
console's 403 page ("Not for your role"), writing nothing but the audit event of the attempt.
Then the attacks on the adjustments screen (a role without the capability proposing, an
operator approving their own proposal, a double submit) fail with nothing moved, and in
Chromium, in both languages, finance proposes and an admin approves: the money moves once."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.adjustments import service as adjustments
from strongroom.adjustments.models import Adjustment
from strongroom.db import Base
from strongroom.identity import service as identity
from strongroom.identity.models import AuditEvent, User
from strongroom.ledger import service as ledger
from strongroom.settings import LedgerLimits
from strongroom.web.console.access import ACCESS, ConsoleGuard

from .conftest import (
    Console,
    csrf_token,
    new_client,
    sandbox_topup,
    screenshot,
    settle,
    web_sign_in,
    web_user,
)
from .console_support import browser_sign_in, console_sign_in, make_operator

if TYPE_CHECKING:
    from playwright.sync_api import Page

SIGN_IN_ROUTES = {  # and /console, a redirect to /console/
    ("GET", "/console"),
    ("GET", "/console/signin"),
    ("POST", "/console/signin"),
    ("GET", "/console/signin/code"),
    ("POST", "/console/signin/code"),
    ("POST", "/console/signout"),
}
FORBIDDEN_TITLE = "Not for your role"


def _h1(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    return re.sub(r"\s+", " ", found.group(1)).strip() if found else ""


def console_routes(app: FastAPI) -> list[tuple[str, str, str | None]]:
    """(method, path, screen) of every console route; screen None for the sign-in steps."""
    found = []
    for route in iter_route_contexts(app.routes):
        original = getattr(route, "original_route", route)
        if not isinstance(original, APIRoute) or not original.path.startswith("/console"):
            continue
        screen, pending = None, [original.dependant]
        while pending:
            dependant = pending.pop()
            if isinstance(dependant.call, ConsoleGuard):
                screen = dependant.call.screen
            pending.extend(dependant.dependencies)
        for method in sorted((original.methods or set()) - {"HEAD"}):
            found.append((method, original.path, screen))
    return found


def rows_but_audit(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != AuditEvent.__tablename__
        }


def user_id(engine: Engine, email: str) -> str:
    with db.make_session_factory(engine)() as session:
        found = identity.find_user(session=session, reference=email)
        assert found is not None
        return found.id


def accounts(engine: Engine, email: str) -> tuple[int, int]:
    """The HKD omnibus account and the user's HKD wallet."""
    owner = user_id(engine, email)
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        omnibus = ledger.operator_account(session=session, kind="bank_omnibus", asset="HKD").id
        wallet = ledger.user_wallet_id(session=session, user_id=owner, asset="HKD")
    return omnibus, wallet


def wallet_total(engine: Engine, email: str) -> int:
    with db.make_session_factory(engine)() as session:
        (held,) = ledger.wallet_balances(session=session, user_id=user_id(engine, email))
        return held.total_minor


def proposed_by(engine: Engine, maker_email: str, debit: int, credit: int, minor: int) -> int:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        maker = session.get_one(User, user_id(engine, maker_email))
        proposal = adjustments.Proposal(debit, credit, "HKD", minor, "walk")
        row = adjustments.propose(
            session=session, proposer=maker, proposal=proposal, limits=LedgerLimits()
        )
        return row.id


def send(client: httpx.Client, method: str, path: str, token: str) -> httpx.Response:
    if method == "GET":
        return client.get(path)
    return client.request(method, path, data={"csrf_token": token})


def test_every_console_route_answers_each_role_exactly_as_the_role_table_says(
    app: FastAPI, live_url: str, pg_db: Engine
) -> None:
    customer = web_user(pg_db, "Customer")
    sandbox_topup(pg_db, customer.email, "42.00")
    omnibus, wallet = accounts(pg_db, customer.email)
    maker = make_operator(pg_db, "finance")
    values = {
        "user_id": user_id(pg_db, customer.email),
        "adjustment_id": str(proposed_by(pg_db, maker.email, omnibus, wallet, 1_00)),
        # no such KYC submission or document: a role without the screen is refused before the
        # lookup (403), one with it gets 404 (tests/web/test_kyc_web.py covers real ones)
        "submission_id": "999999",
        "document_id": "999999",
        "merchant_id": "m_" + "0" * 16,  # no such merchant: as for the KYC ids above
    }
    routes = console_routes(app)
    assert {(m, p) for m, p, screen in routes if screen is None} == SIGN_IN_ROUTES
    guarded = [(m, p, s) for m, p, s in routes if s is not None]
    assert {s for _, _, s in guarded} >= {"dashboard", "users", "adjustments", "audit", "outbox"}
    assert all(screen in ACCESS for _, _, screen in guarded)

    browsers: dict[str, tuple[httpx.Client, str]] = {}
    for role in identity.OPERATOR_ROLES:
        client = new_client(live_url)
        console_sign_in(client, make_operator(pg_db, role))
        browsers[role] = (client, csrf_token(client.get("/console/").text))
    user_client = new_client(live_url)
    web_sign_in(user_client, customer)
    stranger = new_client(live_url)
    try:
        before = rows_but_audit(pg_db)
        let_through = []
        for method, template, screen in guarded:
            path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)
            for role, (client, token) in browsers.items():
                if role in ACCESS[screen]:
                    let_through.append((method, path, role))
                    continue
                refused = send(client, method, path, token)
                assert refused.status_code == 403, (role, method, path)
                assert _h1(refused.text) == FORBIDDEN_TITLE, (role, method, path)
            user_token = csrf_token(user_client.get("/app/").text)
            not_operator = send(user_client, method, path, user_token)
            assert (not_operator.status_code, _h1(not_operator.text)) == (403, "Operators only")
            nobody = send(stranger, method, path, "")
            if method == "GET":
                assert nobody.status_code == 303
                assert nobody.headers["location"].startswith("/console/signin")
            else:
                assert nobody.status_code in (303, 403)  # to the sign-in, or no CSRF seed
        assert rows_but_audit(pg_db) == before  # the refusals wrote nothing but the audit log
        assert len(let_through) >= len(guarded)
        for method, path, role in let_through:
            client, token = browsers[role]
            answer = send(client, method, path, token)
            assert answer.status_code != 403 and _h1(answer.text) != FORBIDDEN_TITLE, (
                role,
                method,
                path,
                answer.status_code,
            )
    finally:
        for client, _ in browsers.values():
            client.close()
        user_client.close()
        stranger.close()


# --------------------------------------------------------------------------- the attacks


def _propose(client: httpx.Client, debit: int, credit: int, amount: str, key: str) -> Any:
    page = client.get("/console/adjustments")
    return client.post(
        "/console/adjustments",
        data={
            "csrf_token": csrf_token(page.text),
            "idempotency_key": key,
            "debit_account_id": str(debit),
            "credit_account_id": str(credit),
            "asset": "HKD",
            "amount": amount,
            "reason": "goodwill credit, ticket 99",
        },
    )


def test_console_attacks_on_adjustments_fail_and_move_nothing(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    customer = web_user(pg_db, "Customer")
    sandbox_topup(pg_db, customer.email, "10.00")
    omnibus, wallet = accounts(pg_db, customer.email)
    support = make_operator(pg_db, "support")
    finance = make_operator(pg_db, "finance")
    with new_client(live_url) as support_browser:
        console_sign_in(support_browser, support)
        token = csrf_token(support_browser.get("/console/").text)
        before = rows_but_audit(pg_db)
        refused = support_browser.post(
            "/console/adjustments",
            data={
                "csrf_token": token,
                "debit_account_id": str(omnibus),
                "credit_account_id": str(wallet),
                "asset": "HKD",
                "amount": "1000.00",
                "reason": "x",
            },
        )
        assert (refused.status_code, _h1(refused.text)) == (403, FORBIDDEN_TITLE)
        assert "/console/adjustments" not in support_browser.get("/console/").text  # no menu
        assert rows_but_audit(pg_db) == before

    console_sign_in(http, finance)
    first = _propose(http, omnibus, wallet, "5.00", "same-render")
    assert first.status_code == 303, first.text
    again = _propose(http, omnibus, wallet, "5.00", "same-render")  # a double submit
    assert again.headers["location"] == first.headers["location"]
    with db.make_session_factory(pg_db)() as session:
        assert session.scalar(select(func.count()).select_from(Adjustment)) == 1
    page = http.get(first.headers["location"]).text
    assert "Waiting for approval" in page and "/approve" not in page  # no approve button
    assert "Withdraw" in page
    before = rows_but_audit(pg_db)
    adjustment_path = first.headers["location"]
    own = http.post(
        f"{adjustment_path}/approve", data={"csrf_token": csrf_token(page)}
    )  # sent by hand
    assert own.status_code == 403
    assert "another operator must approve it" in own.text and _h1(own.text).startswith("Adjustment")
    assert rows_but_audit(pg_db) == before
    assert wallet_total(pg_db, customer.email) == 10_00
    bad = _propose(http, omnibus, wallet, "-5", "other-render")
    assert bad.status_code == 422 and "greater than zero" in bad.text
    missing = _propose(http, omnibus, 987654, "5.00", "third-render")
    assert missing.status_code == 404 and "no ledger account with that number" in missing.text
    assert rows_but_audit(pg_db) == before


# --------------------------------------------------------------------------- in Chromium

OpenPage = Callable[..., "Page"]
WORDS = {
    "en": {"propose": "Propose", "approve": "Approve", "approved": "Approved", "wait": "Waiting"},
    "zh_Hant": {"propose": "提出", "approve": "批准", "approved": "已批准", "wait": "等待批准"},
}


@pytest.mark.parametrize("language", ["en", "zh_Hant"])
def test_finance_proposes_and_an_admin_approves_in_the_browser(
    open_page: OpenPage, live_url: str, pg_db: Engine, console: Console, language: str
) -> None:
    from playwright.sync_api import expect

    words = WORDS[language]
    customer = web_user(pg_db, "Customer")
    sandbox_topup(pg_db, customer.email, "10.00")
    omnibus, wallet = accounts(pg_db, customer.email)
    maker = open_page(language)
    browser_sign_in(maker, live_url, make_operator(pg_db, "finance"))
    maker.goto(f"{live_url}/console/adjustments")
    maker.fill("#debit_account_id", str(omnibus))
    maker.fill("#credit_account_id", str(wallet))
    maker.select_option("#asset", "HKD")
    maker.fill("#amount", "12.34")
    maker.fill("#reason", "refund of a double charge, ticket 4711")
    settle(maker)
    screenshot(maker, f"console-adjustments-propose-{language}")
    maker.locator("form.propose button[type=submit]").click()
    maker.wait_for_url(re.compile(r".*/console/adjustments/\d+$"))
    expect(maker.locator('[data-fact="status"]')).to_contain_text(words["wait"])
    expect(maker.locator("form.approve")).to_have_count(0)  # the maker cannot check
    adjustment_url = maker.url
    assert wallet_total(pg_db, customer.email) == 10_00

    checker = open_page(language)
    browser_sign_in(checker, live_url, make_operator(pg_db, "admin"))
    checker.goto(f"{live_url}/console/adjustments")
    row = checker.locator("tr[data-status=pending]")
    expect(row).to_have_count(1)
    settle(checker)
    screenshot(checker, f"console-adjustments-{language}")
    row.locator("a").first.click()
    checker.wait_for_url(adjustment_url)
    settle(checker)
    screenshot(checker, f"console-adjustment-{language}")
    checker.get_by_role("button", name=words["approve"]).click()
    checker.wait_for_url(adjustment_url)
    expect(checker.locator('[data-fact="status"]')).to_contain_text(words["approved"])
    expect(checker.locator('[data-fact="transfer"]')).to_contain_text("adjustment:")
    settle(checker)
    screenshot(checker, f"console-adjustment-approved-{language}")
    assert wallet_total(pg_db, customer.email) == 10_00 + 12_34
    maker.reload()
    expect(maker.locator('[data-fact="status"]')).to_contain_text(words["approved"])
    assert wallet_total(pg_db, customer.email) == 10_00 + 12_34
    assert not [e for e in console.errors if "status of 40" not in e], console.errors
