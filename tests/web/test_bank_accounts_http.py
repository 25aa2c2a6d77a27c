"""The Lite bank accounts screen over HTTP against the live server on PostgreSQL (issue #12 item
2): refusals are clear and write nothing (a wrong password only counts toward the step-up
limit), another user's account cannot be removed, and the page never shows a full number."""

from __future__ import annotations

import re
from html import unescape

import httpx
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.banking.models import BankAccount
from strongroom.identity.models import User

from .conftest import WebUser, csrf_token, fingerprint, new_client, web_sign_in, web_user

PATH = "/app/bank-accounts"


def _signed_in(http: httpx.Client, engine: Engine, name: str, legal: str | None) -> WebUser:
    user = web_user(engine, name)
    if legal is not None:
        with db.unit_of_work(db.make_session_factory(engine)) as session:
            session.execute(update(User).where(User.email == user.email).values(legal_name=legal))
    web_sign_in(http, user)
    return user


def _alert(html: str) -> str:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', html, re.S)
    assert found is not None, "no alert on the page"
    return unescape(found.group(1))


def _link(http: httpx.Client, **form: str) -> httpx.Response:
    token = csrf_token(http.get(PATH).text)
    fields = {
        "holder_name": "Chan Tai Man",
        "bank_code": "004",
        "account_number": "123456789",
        "password": "",
    } | form
    return http.post(PATH, data={"csrf_token": token, **fields})


def _without_step_up_rows(rows: dict[str, int]) -> dict[str, int]:
    """A wrong password is counted (a kept record) and audited; nothing else may change."""
    return {k: v for k, v in rows.items() if k not in ("identity_step_up_failures", "audit_events")}


def test_refusals_write_nothing(http: httpx.Client, pg_db: Engine) -> None:
    user = _signed_in(http, pg_db, "Alice", None)
    before = fingerprint(pg_db)
    refused = _link(http, password=user.password)
    assert refused.status_code == 403
    assert _alert(refused.text).startswith("Verify your identity first")
    assert fingerprint(pg_db) == before
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(User).where(User.email == user.email).values(legal_name="CHAN Tai Man")
        )
    before = fingerprint(pg_db)
    cases = [
        ({"holder_name": "Chan Tai"}, 422, "The account holder must be you"),
        ({"bank_code": "4"}, 422, "The bank code is 3 to 12 digits."),
        ({"account_number": "12ab"}, 422, "The account number is 6 to 19 digits."),
        ({"password": ""}, 403, "Enter your password to make this change."),
    ]
    for form, status, text in cases:
        response = _link(http, **({"password": user.password} | form))
        assert response.status_code == status, response.text
        assert _alert(response.text).startswith(text)
    assert fingerprint(pg_db) == before
    wrong = _link(http, password="not-the-password")
    assert wrong.status_code == 401 and _alert(wrong.text) == "Your password is wrong."
    assert _without_step_up_rows(fingerprint(pg_db)) == _without_step_up_rows(before)
    done = _link(http, password=user.password, account_number="1234 5678 9")
    assert done.status_code == 303 and done.headers["location"] == PATH
    page = http.get(PATH).text
    assert "****6789" in page and "123456789" not in page
    assert "The bank account was linked." in page


def test_another_users_account_cannot_be_removed(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    alice = _signed_in(http, pg_db, "Alice", "CHAN Tai Man")
    assert _link(http, password=alice.password).status_code == 303
    with db.make_session_factory(pg_db)() as session:
        (account_id,) = session.scalars(select(BankAccount.id)).all()
    with new_client(live_url) as other:
        mallory = _signed_in(other, pg_db, "Mallory", "Mallory Lee")
        before = fingerprint(pg_db)
        token = csrf_token(other.get(PATH).text)
        response = other.post(
            f"{PATH}/{account_id}/remove",
            data={"csrf_token": token, "password": mallory.password},
        )
        assert response.status_code == 404
        assert _alert(response.text) == "That bank account is not linked."
        assert "****6789" not in other.get(PATH).text
        assert fingerprint(pg_db) == before
    with db.make_session_factory(pg_db)() as session:
        assert session.get_one(BankAccount, account_id).removed_at is None
