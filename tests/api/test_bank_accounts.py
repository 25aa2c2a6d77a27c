"""Linked bank accounts over HTTP on PostgreSQL (issue #12 item 2, R-FUND-2, R-SEC-5, R-SEC-8):
the holder must be the user's own verified legal name; the step-up; at most 5; duplicates; masked
numbers; other users' accounts are not found; removing one freezes withdrawals and emails; every
refusal changes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pyotp
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.banking.models import BankAccount
from strongroom.identity.models import AuditEvent, User
from strongroom.ledger import reports
from strongroom.notify.models import OutboxEmail
from tests.api.conftest import PASSWORD, Caller, signup

LEGAL = "CHAN Tai Man"


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body["error"]


def verified(engine: Engine, caller: Caller, legal_name: str = LEGAL) -> Caller:
    """What KYC approval does for banking: the verified legal name on the user."""
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        session.execute(update(User).where(User.id == caller.user_id).values(legal_name=legal_name))
    return caller


def counts(engine: Engine) -> tuple[int, int, int]:
    """Bank accounts linked, emails, and the user's frozen-until stamps set."""
    with db.make_session_factory(engine)() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(BankAccount)
                .where(BankAccount.removed_at.is_(None))
            )
            or 0,
            session.scalar(select(func.count()).select_from(OutboxEmail)) or 0,
            session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.withdrawals_frozen_until.is_not(None))
            )
            or 0,
        )


def link(caller: Caller, number: str = "123456789", **overrides: object) -> httpx.Response:
    body: dict[str, object] = {
        "holder_name": "Tai Man Chan",
        "bank_code": "004",
        "account_number": number,
        "password": PASSWORD,
    } | overrides
    return caller.client.post("/v1/bank-accounts", json=body, headers=caller.headers())


def remove(caller: Caller, account_id: object, **body: object) -> httpx.Response:
    return caller.client.request(
        "DELETE",
        f"/v1/bank-accounts/{account_id}",
        json={"password": PASSWORD} | body,
        headers=caller.headers(),
    )


def test_link_list_and_remove(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"))
    created = link(alice, "012-345-6789")
    assert created.status_code == 201, created.text
    account_id = created.json()["id"]
    assert set(created.json()) == {"id"}
    listed = alice.get("/v1/bank-accounts").json()
    assert listed["max"] == 5
    (item,) = listed["items"]
    assert item["id"] == account_id
    assert item["bank_code"] == "004" and item["holder_name"] == "Tai Man Chan"
    assert item["account_number_masked"] == "****6789"
    assert "0123456789" not in alice.get("/v1/bank-accounts").text
    # linking does not freeze withdrawals (the account is in the user's own name)
    assert alice.get("/v1/me").json()["withdrawals_frozen_until"] is None
    with db.make_session_factory(pg_db)() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.subject_user_id == alice.user_id)
            )
        )
    assert "bank_account.linked" in actions

    _, emails_before, _ = counts(pg_db)
    gone = remove(alice, account_id)
    assert gone.status_code == 204, gone.text
    assert alice.get("/v1/bank-accounts").json()["items"] == []
    assert alice.get("/v1/me").json()["withdrawals_frozen_until"] is not None  # R-SEC-5
    with db.make_session_factory(pg_db)() as session:
        email = session.scalars(
            select(OutboxEmail).where(
                OutboxEmail.user_id == alice.user_id,
                OutboxEmail.template_id == "security.settings_changed",
            )
        ).one()
        actions = list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.subject_user_id == alice.user_id)
            )
        )
    assert "****6789" in email.body_text and "removed" in email.subject
    assert "bank_account.removed" in actions
    assert counts(pg_db)[1] == emails_before + 1
    error_of(remove(alice, account_id), 404, "bank_account_not_found")  # removed already
    # the same account can be linked again after its removal
    assert link(alice, "0123456789").status_code == 201


def test_a_12_digit_mainland_bank_code_is_linked_whole(client, pg_db):
    """CNAPS codes (mainland China) have 12 digits, the most the rules accept."""
    alice = verified(pg_db, signup(client, "Alice"))
    created = link(alice, "6222021234567890", bank_code="1021 0009 9996")
    assert created.status_code == 201, created.text
    (item,) = alice.get("/v1/bank-accounts").json()["items"]
    assert item["bank_code"] == "102100099996"


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("Chan Tai", 422, "holder_name_mismatch"),
        ("T M Chan", 422, "holder_name_mismatch"),
        ("陳大文", 422, "holder_name_mismatch"),
        ("   ", 422, "invalid_holder_name"),
    ],
)
def test_the_holder_must_be_the_verified_legal_name(client, pg_db, name, status, code):
    alice = verified(pg_db, signup(client, "Alice"))
    before = counts(pg_db)
    error_of(link(alice, holder_name=name), status, code)
    assert counts(pg_db) == before


def test_chinese_names_with_and_without_spaces(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"), legal_name="陳大文")
    assert link(alice, holder_name="陳 大文").status_code == 201
    error_of(link(alice, "223456789", holder_name="陈大文"), 422, "holder_name_mismatch")


def test_no_verified_name_is_kyc_required(client, pg_db):
    alice = signup(client, "Alice")
    unverified = verified(pg_db, signup(client, "Bob", verify=False))
    before = counts(pg_db)
    error = error_of(link(alice), 403, "kyc_required")
    assert error["details"] == {"required_tier": "primary"}
    error_of(link(unverified), 403, "email_unverified")
    assert counts(pg_db) == before


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("bank_code", "12", "invalid_bank_code"),
        ("bank_code", "0x4", "invalid_bank_code"),
        ("bank_code", "１２３", "invalid_bank_code"),  # full-width digits are not ASCII digits
        ("bank_code", "1021000999961", "invalid_bank_code"),  # 13 digits: one past CNAPS
        ("account_number", "12345", "invalid_account_number"),
        ("account_number", "12345678901234567890", "invalid_account_number"),
        ("account_number", "12345abc9", "invalid_account_number"),
        ("holder_name", "x" * 201, "validation_error"),
        ("bank_code", None, "validation_error"),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(client, pg_db, field, value, code):
    alice = verified(pg_db, signup(client, "Alice"))
    before = counts(pg_db)
    error_of(link(alice, **{field: value}), 422, code)
    assert counts(pg_db) == before


def test_step_up_is_needed(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"))
    before = counts(pg_db)
    error_of(link(alice, password=None), 403, "reauthentication_required")
    wrong = error_of(link(alice, password="not-the-password"), 401, "invalid_credentials")
    assert wrong["details"]["attempts_left"] == 4
    assert counts(pg_db) == before
    created = link(alice).json()["id"]
    before = counts(pg_db)
    error_of(remove(alice, created, password="not-the-password"), 401, "invalid_credentials")
    error_of(remove(alice, created, password=None), 403, "reauthentication_required")
    assert counts(pg_db) == before
    assert len(alice.get("/v1/bank-accounts").json()["items"]) == 1


def test_two_factor_code_is_needed_when_2fa_is_on(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"))
    secret = alice.post("/v1/me/2fa", {"password": PASSWORD}, key=None).json()["secret"]
    confirmed = alice.post(
        "/v1/me/2fa/confirm", {"otp": pyotp.TOTP(secret).now(), "password": PASSWORD}, key=None
    )
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    before = counts(pg_db)
    error_of(link(alice), 401, "otp_required")
    error_of(link(alice, otp="000000"), 401, "invalid_otp")
    assert counts(pg_db)[0] == before[0]
    assert link(alice, otp=recovery[0]).status_code == 201


def test_at_most_five_and_no_duplicates(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"))
    ids = []
    for index in range(5):
        response = link(alice, f"10000000{index}")
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    before = counts(pg_db)
    error_of(link(alice, "100000000"), 409, "bank_account_exists")
    error = error_of(link(alice, "200000000"), 409, "too_many_bank_accounts")
    assert error["details"] == {"max": 5}
    assert counts(pg_db) == before
    assert remove(alice, ids[0]).status_code == 204
    assert link(alice, "200000000").status_code == 201


def test_other_users_accounts_are_not_found(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"))
    mallory = verified(pg_db, signup(client, "Mallory"), legal_name="Mallory Lee")
    account_id = link(alice).json()["id"]
    before = counts(pg_db)
    error_of(remove(mallory, account_id), 404, "bank_account_not_found")
    error_of(remove(mallory, 999_999), 404, "bank_account_not_found")
    assert mallory.get("/v1/bank-accounts").json()["items"] == []
    # mallory cannot link an account in alice's name either
    error_of(link(mallory), 422, "holder_name_mismatch")
    assert counts(pg_db) == before
    assert len(alice.get("/v1/bank-accounts").json()["items"]) == 1
    with db.make_session_factory(pg_db)() as session:
        assert reports.check(session=session).ok


def test_bad_path_ids_and_no_token(client, pg_db):
    alice = verified(pg_db, signup(client, "Alice"))
    for bad in ("0", "-1", "abc", str(2**63)):
        assert remove(alice, bad).status_code == 422
    assert client.get("/v1/bank-accounts").status_code == 401
    assert client.post("/v1/bank-accounts", json={}).status_code in (401, 422)


def test_concurrent_links_cannot_pass_the_limit(client, pg_db, live_url):
    """Four sessions of one user link a fifth account each at once: the user's row lock lets
    exactly one through."""
    alice = verified(pg_db, signup(client, "Alice"))
    for index in range(4):
        assert link(alice, f"30000000{index}").status_code == 201
    tokens = []
    for _ in range(4):
        login = client.post("/v1/auth/login", json={"email": alice.email, "password": PASSWORD})
        tokens.append(login.json()["token"])

    def attempt(pair: tuple[int, str]) -> int:
        index, token = pair
        with httpx.Client(base_url=live_url, timeout=60) as http:
            response = http.post(
                "/v1/bank-accounts",
                json={
                    "holder_name": LEGAL,
                    "bank_code": "004",
                    "account_number": f"40000000{index}",
                    "password": PASSWORD,
                },
                headers={"Authorization": f"Bearer {token}"},
            )
        return response.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(attempt, enumerate(tokens)))
    assert statuses == [201, 409, 409, 409]
    assert len(alice.get("/v1/bank-accounts").json()["items"]) == 5
