"""Personal data over HTTP on PostgreSQL (issue #11 item 7): the data export holds every kind
of record the user has, their KYC documents decrypted byte for byte, and nothing of another
user; erasure replaces every personal field (scanned in every column of every table), deletes
the document files, keeps the ledger balanced, is refused while money is held or with a wrong
password (nothing changed), and the erased email can register again."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom import db
from strongroom.app import create_app
from strongroom.cli import app as cli
from strongroom.db import Base
from strongroom.errors import Forbidden
from strongroom.fx.models import FxConversion, FxQuote
from strongroom.identity.models import AuditEvent, AuthToken, User
from strongroom.identity.step_up import StepUp
from strongroom.kyc.store import FilesystemStore
from strongroom.ledger import reports
from strongroom.notify.models import OutboxEmail
from strongroom.privacy import service as privacy
from strongroom.settings import KycSettings, PrivacySettings, Settings
from tests.api.conftest import PASSWORD, Caller, operator, signup
from tests.api.connector_support import connector_settings, notification, send_webhook
from tests.api.kyc_support import PRIMARY_FIELDS, minimal_pdf, noise_image, stored_files, submit
from tests.web.conftest import fingerprint

LEGAL = "Chan Tai Man"
DOCUMENT_NUMBER = "Z987654(3)"
PHONE = "+852 5123 9876"
ACCOUNT_NUMBER = "908172635"
DEVICE_NAME = "Xiuying's pocket phone"
APC = "QZX42"

PERSONAL_COLUMNS = {
    "users": ["email", "name", "phone", "legal_name", "nationality", "anti_phishing_code"],
    "auth_tokens": ["ip", "user_agent"],
    "kyc_submissions": [
        "document_country",
        "document_type",
        "legal_name",
        "document_number",
        "date_of_birth",
        "residence_country",
    ],
    "kyc_documents": ["(every row: deleted, with its sealed file)"],
    "bank_accounts": ["holder_name", "account_number"],
    "paycode_devices": ["name"],
    "mail_outbox": ["to_address", "subject", "body_text", "body_html", "context"],
    "identity_email_verifications": ["email (rows deleted)"],
    "identity_password_resets": ["email (rows deleted)"],
    "identity_login_throttle": ["email (rows deleted)"],
}
"""Every column that held a personal field; the scan below also reads every other column of
every table (less the documented exceptions) for the user's values."""

KEPT_AS_WRITTEN = {"audit_events", "ledger_transfers"}
"""Append-only by database trigger (R-SEC-7, the journal): documented in privacy.service."""


def kyc_settings(engine: Engine, documents_dir: Path) -> Settings:
    return connector_settings(engine).model_copy(
        update={"kyc": KycSettings(documents_dir=str(documents_dir))}
    )


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    return tmp_path / "kyc-documents"


@pytest.fixture
def app(pg_db: Engine, documents_dir: Path) -> FastAPI:
    return create_app(kyc_settings(pg_db, documents_dir), pg_db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def ledger_checked(pg_db: Engine) -> Iterator[None]:
    yield
    with db.make_session_factory(pg_db)() as session:
        report = reports.check(session=session)
    assert report.ok, report.problems


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == code, error
    return error


def export(caller: Caller, password: str | None = PASSWORD) -> httpx.Response:
    headers = caller.headers()
    if password is not None:
        headers["X-Password"] = password
    return caller.client.get("/v1/me/data-export", headers=headers)


def erase(caller: Caller, password: str | None = PASSWORD) -> httpx.Response:
    body = {} if password is None else {"password": password}
    return caller.client.post("/v1/me/erasure", json=body, headers=caller.headers())


@dataclass
class World:
    alice: Caller
    bob: Caller
    reviewer: Caller
    finance: Caller
    documents: dict[int, bytes]  # document id -> plaintext as a reviewer sees it


def build_world(client: TestClient, pg_db: Engine) -> World:
    """Alice with one of every kind of record, made through the API (the services)."""
    alice, bob = signup(client, "Xiuying Lamberton"), signup(client, "Bob Wong")
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    finance = operator(client, pg_db, role="finance")
    assert (
        client.put("/v1/me/phone", json={"phone": PHONE}, headers=alice.headers()).status_code
        == 200
    )
    code = client.put(
        "/v1/me/anti-phishing-code",
        json={"code": APC, "password": PASSWORD},
        headers=alice.headers(),
    )
    assert code.status_code == 204, code.text
    fields = PRIMARY_FIELDS | {"legal_name": LEGAL, "document_number": DOCUMENT_NUMBER}
    made = submit(
        alice,
        fields,
        {
            "front": ("front.jpg", noise_image("JPEG"), "image/jpeg"),
            "back": ("back.pdf", minimal_pdf(), "application/pdf"),
        },
    )
    assert made.status_code == 201, made.text
    submission_id = made.json()["id"]
    approved = reviewer.post(f"/v1/admin/kyc/submissions/{submission_id}/approve", {}, key=None)
    assert approved.status_code == 200, approved.text
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.execute(
            update(User).where(User.id == alice.user_id).values(legal_name=LEGAL, nationality="HK")
        )
        ids = list(
            session.scalars(
                text("SELECT id FROM kyc_documents WHERE submission_id = :s ORDER BY id"),
                {"s": submission_id},
            )
        )
    documents = {}
    for document_id in ids:
        seen = reviewer.client.get(
            f"/v1/admin/kyc/documents/{document_id}", headers=reviewer.headers()
        )
        assert seen.status_code == 200, seen.text
        documents[document_id] = seen.content
    linked = client.post(
        "/v1/bank-accounts",
        json={
            "holder_name": LEGAL,
            "bank_code": "004",
            "account_number": ACCOUNT_NUMBER,
            "password": PASSWORD,
        },
        headers=alice.headers(),
    )
    assert linked.status_code == 201, linked.text
    assert alice.post("/v1/devices", {"name": DEVICE_NAME}, key=None).status_code == 201
    card = alice.post("/v1/tokens", {}, key=None)
    assert card.status_code == 201, card.text
    alice.topup("100.00")
    # a top-up record: an FPS top-up the bank reports as failed (no money, no T+N lock)
    opened = alice.post("/v1/topups", {"asset": "HKD", "amount": "30.00", "channel": "fps"})
    assert opened.status_code == 201, opened.text
    failed = send_webhook(client, "fps", notification(opened.json()["reference"], "failed"))
    assert failed.status_code == 200, failed.text
    rate = finance.client.put(
        "/v1/admin/fx/rates/BTC/HKD",
        json={"mid": "500000", "spread_bps": 100},
        headers=finance.headers(),
    )
    assert rate.status_code == 200, rate.text
    quote = alice.post(
        "/v1/fx/quotes", {"from_asset": "HKD", "to_asset": "BTC", "amount": "50.00"}, None
    )
    assert quote.status_code == 201, quote.text
    converted = alice.post("/v1/conversions", {"quote_id": quote.json()["quote_id"]})
    assert converted.status_code == 201, converted.text
    sent = alice.post(
        "/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "50.00", "note": "rent"}
    )
    assert sent.status_code == 201, sent.text
    return World(alice, bob, reviewer, finance, documents)


def empty_wallets(world: World) -> None:
    """Alice gives Bob what she still holds, so that her account may be erased."""
    for row in world.alice.get("/v1/balances").json()["balances"]:
        if row["total"] not in ("0", "0.00", "0.00000000") and float(row["total"]) != 0:
            sent = world.alice.post(
                "/v1/transfers",
                {"to": world.bob.email, "asset": row["asset"], "amount": row["total"]},
            )
            assert sent.status_code == 201, sent.text


def unzip(response: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("data.json")), files


# --------------------------------------------------------------------------- export


def test_the_export_holds_every_kind_of_record_and_the_documents_byte_identical(
    client: TestClient, pg_db: Engine
) -> None:
    world = build_world(client, pg_db)
    alice, bob = world.alice, world.bob
    bob.topup("7.00")  # Bob's own records, which must not appear
    data, files = unzip(export(alice))
    profile = data["profile"]
    assert profile["email"] == alice.email and profile["user_id"] == alice.user_id
    assert profile["legal_name"] == LEGAL and profile["phone"] == "+85251239876"
    for section in (
        "sessions",
        "audit_events",
        "bank_accounts",
        "payment_code_devices",
        "virtual_cards",
        "accounts",
        "transactions",
        "fx_quotes",
        "fx_conversions",
        "topups",
        "emails",
        "kyc_submissions",
    ):
        assert data[section], f"{section} is empty"
    (bank,) = data["bank_accounts"]
    assert bank["account_number"] == ACCOUNT_NUMBER  # the full number: it is theirs
    (device,) = data["payment_code_devices"]
    assert device["name"] == DEVICE_NAME and "secret_sealed" not in device
    (card,) = data["virtual_cards"]
    assert set(card) >= {"last4", "status"} and "number_sealed" not in card
    assert all("token_hash" not in s for s in data["sessions"])
    notes = {t["note"] for t in data["transactions"]}
    assert "rent" in notes
    codes = {t["code"] for t in data["transactions"]}
    assert "fx" in codes
    assert {m["subject"] for m in data["emails"]}
    (submission,) = data["kyc_submissions"]
    assert submission["legal_name"] == LEGAL and submission["document_number"] == DOCUMENT_NUMBER
    assert len(submission["documents"]) == 2
    for document in submission["documents"]:
        assert files[document["file"]] == world.documents[document["id"]]
    assert any(name.endswith(".pdf") for name in files)
    assert files[next(n for n in files if n.endswith(".pdf"))] == minimal_pdf()
    # another user's data never appears
    blob = json.dumps(data) + "".join(files)
    for foreign in (bob.email, bob.user_id, "Bob Wong", world.reviewer.email):
        assert foreign not in blob
    # audited and emailed
    with db.make_session_factory(pg_db)() as session:
        assert session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject_user_id == alice.user_id,
                AuditEvent.action == "privacy.data_exported",
            )
        ).one()
        mail = session.scalars(
            select(OutboxEmail).where(
                OutboxEmail.user_id == alice.user_id,
                OutboxEmail.template_id == "privacy.data_exported",
            )
        ).one()
    assert APC in mail.body_text and "2 identity document" in mail.body_text
    # the POST form with a JSON body gives the same archive
    posted = client.post("/v1/me/data-export", json={"password": PASSWORD}, headers=alice.headers())
    assert unzip(posted)[1].keys() == files.keys()


def test_the_export_needs_the_password_and_a_wrong_one_changes_nothing(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    before = fingerprint(pg_db)
    error_of(export(alice, None), 403, "reauthentication_required")
    assert fingerprint(pg_db) == before
    error_of(export(alice, "not-the-password"), 401, "invalid_credentials")
    after = fingerprint(pg_db)
    # the wrong password is counted and audited (R-SEC-8's kept records), nothing else
    assert {k: v for k, v in after.items() if after[k] != before[k]}.keys() <= {
        "audit_events",
        "identity_step_up_failures",
    }
    assert client.get("/v1/me/data-export").status_code == 401


def test_an_export_too_large_is_refused(client: TestClient, pg_db: Engine) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    app.state.settings = app.state.settings.model_copy(
        update={"privacy": PrivacySettings(export_max_rows=10)}
    )
    alice = signup(client, "Alice")
    for _ in range(11):
        assert (
            client.post(
                "/v1/auth/login", json={"email": alice.email, "password": PASSWORD}
            ).status_code
            == 200
        )
    error = error_of(export(alice), 413, "export_too_large")
    assert error["details"] == {"section": "sessions", "rows_max": 10}


# --------------------------------------------------------------------------- erasure


def scan_for(engine: Engine, values: list[str]) -> list[tuple[str, str, str]]:
    """Every (table, column, value) where one of ``values`` appears, case-insensitively, in any
    column of any table but the documented append-only ones."""
    found = []
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in KEPT_AS_WRITTEN:
                continue
            for row in connection.execute(select(table)).mappings():
                for column, cell in row.items():
                    if cell is None:
                        continue
                    rendered = str(cell).lower()
                    for value in values:
                        if value.lower() in rendered:
                            found.append((table.name, column, value))
    return found


def test_erasure_removes_every_personal_field_and_keeps_the_ledger(
    client: TestClient, pg_db: Engine, documents_dir: Path
) -> None:
    world = build_world(client, pg_db)
    alice = world.alice
    empty_wallets(world)
    # a wrong password at sign-in (the throttle keeps the email) and a reset asked for
    client.post("/v1/auth/login", json={"email": alice.email, "password": "wrong-password-x"})
    client.post("/v1/auth/password-reset", json={"email": alice.email})
    personal = [
        alice.email,
        "Xiuying",
        "Lamberton",
        LEGAL,
        DOCUMENT_NUMBER,
        "51239876",
        ACCOUNT_NUMBER,
        DEVICE_NAME,
        APC,
        "1990-04-01",
    ]
    assert scan_for(pg_db, personal)  # the scan sees them before
    files_before = len(stored_files(documents_dir))
    assert files_before == 2
    with db.make_session_factory(pg_db)() as session:
        money_rows = {
            "transfers": session.scalar(text("SELECT count(*) FROM ledger_transfers")),
            "conversions": session.scalar(text("SELECT count(*) FROM fx_conversions")),
            "topups": session.scalar(text("SELECT count(*) FROM funding_topups")),
        }

    done = erase(alice)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["user_id"] == alice.user_id
    left = scan_for(pg_db, personal)
    assert left == [], left
    assert stored_files(documents_dir) == []
    with db.make_session_factory(pg_db)() as session:
        user = session.get_one(User, alice.user_id)
        assert user.email == privacy.pseudonym_email(alice.user_id)
        assert user.email.startswith("erased-") and user.email.endswith("@invalid")
        assert user.name == privacy.ERASED_NAME
        for column in PERSONAL_COLUMNS["users"][2:]:
            assert getattr(user, column) is None, column
        assert user.erased_at is not None
        tokens = session.scalars(select(AuthToken).where(AuthToken.user_id == alice.user_id))
        assert all(t.revoked_at is not None and t.ip is None for t in tokens)
        for table, columns in PERSONAL_COLUMNS.items():
            assert columns, table
        assert session.scalar(text("SELECT count(*) FROM kyc_documents")) == 0
        assert {
            "transfers": session.scalar(text("SELECT count(*) FROM ledger_transfers")),
            "conversions": session.scalar(text("SELECT count(*) FROM fx_conversions")),
            "topups": session.scalar(text("SELECT count(*) FROM funding_topups")),
        } == money_rows
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "privacy.account_erased")
        ).one()
        assert event.subject_user_id == alice.user_id
        assert event.ip is None and event.user_agent is None and event.actor_id is None
        assert not any(value.lower() in event.details_json.lower() for value in personal)
        unsent = session.scalars(
            select(OutboxEmail).where(
                OutboxEmail.user_id == alice.user_id, OutboxEmail.status == "pending"
            )
        ).all()
        assert unsent == []
    # closed: the token is dead, the old email and password sign nobody in
    assert alice.get("/v1/me").status_code == 401
    error_of(
        client.post("/v1/auth/login", json={"email": alice.email, "password": PASSWORD}),
        401,
        "invalid_credentials",
    )
    # the erased email registers again, as a new user
    again = client.post(
        "/v1/auth/register",
        json={"email": alice.email, "password": PASSWORD, "name": "New Person", "region": "HK"},
    )
    assert again.status_code == 201, again.text
    assert again.json()["user_id"] != alice.user_id
    # Bob's records are untouched, and he can send the erased account nothing, by any reference
    assert world.bob.get("/v1/me").json()["email"] == world.bob.email
    for reference in (alice.user_id, privacy.pseudonym_email(alice.user_id), PHONE):
        sent = world.bob.post("/v1/transfers", {"to": reference, "asset": "HKD", "amount": "1"})
        assert sent.status_code == 404, (reference, sent.text)


def test_erasure_is_refused_while_money_is_held_and_changes_nothing(
    client: TestClient, pg_db: Engine, documents_dir: Path
) -> None:
    alice = signup(client, "Alice")
    alice.topup("5.00")
    before = fingerprint(pg_db)
    error = error_of(erase(alice), 409, "balance_not_zero")
    assert error["details"] == {"assets": ["HKD"], "pending_topups": 0}
    assert fingerprint(pg_db) == before
    assert alice.get("/v1/me").json()["email"] == alice.email


def test_erasure_with_a_wrong_or_missing_password_changes_nothing(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    before = fingerprint(pg_db)
    error_of(erase(alice, None), 403, "reauthentication_required")
    assert fingerprint(pg_db) == before
    error_of(erase(alice, "not-the-password"), 401, "invalid_credentials")
    with db.make_session_factory(pg_db)() as session:
        user = session.get_one(User, alice.user_id)
        assert user.email == alice.email and user.erased_at is None
    assert alice.get("/v1/me").status_code == 200
    assert client.post("/v1/me/erasure", json={"password": PASSWORD}).status_code == 401


def test_an_operator_is_not_erased(client: TestClient, pg_db: Engine, documents_dir: Path) -> None:
    admin = operator(client, pg_db, role="admin")
    before = fingerprint(pg_db)
    with db.make_session_factory(pg_db)() as session:
        user = session.get_one(User, admin.user_id)
        proof = StepUp(user_id=user.id, session_id="any", at=user.created_at)
        with pytest.raises(Forbidden) as refused:
            privacy.erase(
                session=session,
                user=user,
                proof=proof,
                store=FilesystemStore(documents_dir),
                settings=PrivacySettings(),
            )
    assert refused.value.code == "operator_account"
    assert fingerprint(pg_db) == before
    assert admin.get("/v1/me").status_code == 200


def test_purge_after_retention_deletes_the_remaining_records(
    client: TestClient, pg_db: Engine
) -> None:
    world = build_world(client, pg_db)
    empty_wallets(world)
    assert erase(world.alice).status_code == 200
    settings = PrivacySettings()
    factory = db.make_session_factory(pg_db)
    with db.unit_of_work(factory) as session:
        assert privacy.purge(session=session, settings=settings) == []  # not yet
    with db.unit_of_work(factory) as session:
        erased_at = session.get_one(User, world.alice.user_id).erased_at
        assert erased_at is not None
        later = erased_at + timedelta(days=settings.retention_days, seconds=1)
        assert privacy.purge(session=session, settings=settings, now=later) == [world.alice.user_id]
    with factory() as session:
        user = session.get_one(User, world.alice.user_id)
        assert user.purged_at is not None
        for model in (FxConversion, FxQuote, OutboxEmail):
            rows = session.scalars(select(model).where(model.user_id == user.id)).all()
            assert rows == [], model.__tablename__
        # the journal stays, pseudonymised; Bob's quotes and emails stay
        assert session.scalar(text("SELECT count(*) FROM ledger_transfers")) > 0
        assert session.scalars(
            select(OutboxEmail).where(OutboxEmail.user_id == world.bob.user_id)
        ).all()


def test_unique_emails_stay_unique_across_erasures(client: TestClient, pg_db: Engine) -> None:
    emails = {privacy.pseudonym_email(uuid.uuid4().hex) for _ in range(100)}
    assert len(emails) == 100


def test_the_cli_purges_accounts_erased_before_the_retention_period(
    client: TestClient, pg_db: Engine
) -> None:
    alice = signup(client, "Alice")
    assert erase(alice).status_code == 200
    url = pg_db.url.render_as_string(hide_password=False)
    first = CliRunner().invoke(cli, ["privacy", "purge", "--database-url", url])
    assert first.exit_code == 0, first.output
    assert "purged 0 erased account(s)" in first.output
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        user = session.get_one(User, alice.user_id)
        assert user.erased_at is not None
        user.erased_at -= timedelta(days=8 * 366)
    second = CliRunner().invoke(cli, ["privacy", "purge", "--database-url", url])
    assert second.exit_code == 0, second.output
    assert "purged 1 erased account(s)" in second.output
    with db.make_session_factory(pg_db)() as session:
        assert session.get_one(User, alice.user_id).purged_at is not None


def test_export_and_erasure_on_sqlite(sqlite_db: Engine, tmp_path: Path) -> None:
    """The embedded default: the same export, erasure and purge."""
    app = create_app(kyc_settings(sqlite_db, tmp_path / "documents"), sqlite_db)
    with TestClient(app) as client:
        alice = signup(client, "Alice")
        alice.topup("1.00")
        data, _ = unzip(export(alice))
        assert data["profile"]["email"] == alice.email and data["transactions"]
        error_of(erase(alice), 409, "balance_not_zero")
        bob = signup(client, "Bob")
        sent = alice.post("/v1/transfers", {"to": bob.email, "asset": "HKD", "amount": "1.00"})
        assert sent.status_code == 201, sent.text
        assert erase(alice).status_code == 200
        assert alice.get("/v1/me").status_code == 401
    later = datetime.now(UTC) + timedelta(days=PrivacySettings().retention_days + 1)
    with db.unit_of_work(db.make_session_factory(sqlite_db)) as session:
        purged = privacy.purge(session=session, settings=PrivacySettings(), now=later)
    assert purged == [alice.user_id]
    with db.make_session_factory(sqlite_db)() as session:
        assert reports.check(session=session).ok
