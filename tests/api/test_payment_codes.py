"""Consumer-presented payment codes (R-CODE-1): devices and codes through the API, and the
charge path's ``resolve_and_consume`` with a controllable clock. The code a third-party app
would show is computed here by an independent implementation of docs/payment-codes.md (the
standard library only, nothing of strongroom.paycodes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.db import Base
from strongroom.identity.models import AuditEvent
from strongroom.paycodes import service
from strongroom.paycodes.models import CodeUse, Device
from strongroom.settings import PaymentCodeSettings
from tests.api.conftest import make_settings, operator, signup

SETTINGS = PaymentCodeSettings()


def offline_code(issuer_id: str, locator: str, secret_b32: str, unix_time: float) -> str:
    """docs/payment-codes.md, written from the document alone."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int(unix_time) // 30
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha256).digest()
    offset = mac[31] & 0x0F
    number = int.from_bytes(mac[offset : offset + 8], "big") & 0x7FFFFFFFFFFFFFFF
    return issuer_id + locator + str(number % 1_000_000_000).zfill(9)


def rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != AuditEvent.__tablename__
        }


def resolve(engine: Engine, code: str, now: datetime) -> service.Resolved:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        return service.resolve_and_consume(
            session=session,
            code=code,
            settings=SETTINGS,
            keyring=make_settings(engine).auth.vault,
            now=now,
        )


def refusal(engine: Engine, code: str, now: datetime) -> str:
    with pytest.raises(service.DomainError) as refused:
        resolve(engine, code, now)
    return refused.value.code


def step_start(now: datetime) -> datetime:
    return datetime.fromtimestamp(int(now.timestamp()) // 30 * 30, UTC)


def test_a_device_is_registered_and_its_secret_shown_once(client, pg_db):
    alice = signup(client, "Alice")
    created = alice.post("/v1/devices", {"name": "Alice's phone"}, key=None)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) >= {"device_id", "secret", "issuer_id", "locator", "step_s", "window_s"}
    assert body["issuer_id"] == "88880001" and len(body["locator"]) == 7
    assert body["step_s"] == 30 and body["window_s"] == 60
    assert len(base64.b32decode(body["secret"] + "====")) == 32
    with pg_db.connect() as connection:
        stored = connection.execute(select(Device.secret_sealed)).scalar_one()
    assert body["secret"] not in stored and stored.startswith("v1.")
    listed = alice.get("/v1/devices").json()["items"]
    assert [item["device_id"] for item in listed] == [body["device_id"]]
    assert listed[0]["status"] == "active" and "secret" not in listed[0]


def test_a_code_computed_offline_is_accepted_once(client, pg_db):
    alice = signup(client, "Alice")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    now = datetime.now(UTC)
    code = offline_code(device["issuer_id"], device["locator"], device["secret"], now.timestamp())
    assert len(code) == 24 and code.isdigit()
    resolved = resolve(pg_db, code, now)
    assert (resolved.user_id, resolved.device_id) == (alice.user_id, device["device_id"])
    assert refusal(pg_db, code, now) == "payment_code_used"
    assert refusal(pg_db, code, now + timedelta(seconds=1)) == "payment_code_used"
    listed = alice.get("/v1/devices").json()["items"][0]
    assert listed["last_used_at"] is not None


def test_a_code_expires_60_seconds_after_its_step_starts(client, pg_db):
    alice = signup(client, "Alice")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    start = step_start(datetime.now(UTC)) - timedelta(minutes=5)  # the clock is ours to set
    code = offline_code(device["issuer_id"], device["locator"], device["secret"], start.timestamp())
    assert refusal(pg_db, code, start + timedelta(seconds=60)) == "payment_code_expired"
    assert refusal(pg_db, code, start + timedelta(seconds=600)) == "payment_code_expired"
    resolved = resolve(pg_db, code, start + timedelta(seconds=59))
    assert resolved.device_id == device["device_id"]
    # a clock running ahead by up to one step: the next step's code is already accepted
    early = offline_code(
        device["issuer_id"], device["locator"], device["secret"], start.timestamp() + 30
    )
    assert resolve(pg_db, early, start + timedelta(seconds=1)).step == resolved.step + 1
    too_early = offline_code(
        device["issuer_id"], device["locator"], device["secret"], start.timestamp() + 60
    )
    assert refusal(pg_db, too_early, start + timedelta(seconds=1)) == "payment_code_invalid"


def test_a_revoked_device_s_codes_are_refused(client, pg_db):
    alice = signup(client, "Alice")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    now = datetime.now(UTC)
    code = offline_code(device["issuer_id"], device["locator"], device["secret"], now.timestamp())
    revoked = client.delete(f"/v1/devices/{device['device_id']}", headers=alice.headers())
    assert revoked.status_code == 204
    assert refusal(pg_db, code, now) == "payment_code_revoked"
    again = client.delete(f"/v1/devices/{device['device_id']}", headers=alice.headers())
    assert again.status_code == 204
    assert alice.get("/v1/devices").json()["items"][0]["status"] == "revoked"
    made = alice.post("/v1/payment-codes", {"device_id": device["device_id"]}, key=None)
    assert made.status_code == 422 and made.json()["error"]["code"] == "device_revoked"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda code: code[:-1] + str((int(code[-1]) + 1) % 10),  # a wrong OTP
        lambda code: "12345678" + code[8:],  # another issuer
        lambda code: code[:-1],  # 23 digits
        lambda code: code[:8] + "x" + code[9:],
        lambda code: "",
    ],
)
def test_wrong_codes_are_invalid(client, pg_db, mangle):
    alice = signup(client, "Alice")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    now = datetime.now(UTC)
    code = offline_code(device["issuer_id"], device["locator"], device["secret"], now.timestamp())
    assert refusal(pg_db, mangle(code), now) == "payment_code_invalid"
    assert resolve(pg_db, code, now).user_id == alice.user_id  # the right one still works


def test_an_unknown_locator_is_invalid(pg_db):
    assert refusal(pg_db, "88880001" + "0" * 16, datetime.now(UTC)) == "payment_code_invalid"


def test_the_server_issues_a_code_from_the_default_device(client, pg_db):
    alice = signup(client, "Alice")
    first = alice.post("/v1/payment-codes", {}, key=None)
    assert first.status_code == 201, first.text
    body = first.json()
    assert len(body["code"]) == 24 and body["code"].startswith("88880001")
    expires_at = datetime.fromisoformat(body["expires_at"])
    now = datetime.now(UTC)
    assert now < expires_at <= now + timedelta(seconds=60)
    no_body = client.post("/v1/payment-codes", headers=alice.headers())
    assert no_body.status_code == 201 and no_body.json()["device_id"] == body["device_id"]
    devices = alice.get("/v1/devices").json()["items"]
    assert len(devices) == 1 and devices[0]["server_held"] is True
    assert resolve(pg_db, body["code"], now).user_id == alice.user_id
    own = alice.post("/v1/devices", {"name": "tablet"}, key=None).json()
    chosen = alice.post("/v1/payment-codes", {"device_id": own["device_id"]}, key=None).json()
    assert chosen["device_id"] == own["device_id"]
    assert chosen["code"][8:15] == own["locator"]


def test_bad_input_is_refused_and_changes_nothing(client, pg_db):
    alice = signup(client, "Alice")
    before = rows(pg_db)
    for body in ({}, {"name": ""}, {"name": "x" * 201}, {"name": 5}, {"name": "a", "x": 1}):
        response = alice.post("/v1/devices", body, key=None)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    blank = alice.post("/v1/devices", {"name": "   "}, key=None)
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "invalid_device_name"
    for body in ({"device_id": "nope"}, {"device_id": 3}, {"other": 1}):
        response = alice.post("/v1/payment-codes", body, key=None)
        assert response.status_code == 422, (body, response.text)
    bad_path = client.delete("/v1/devices/not-a-device", headers=alice.headers())
    assert bad_path.status_code == 422
    assert rows(pg_db) == before


def test_devices_are_limited_per_user(client, pg_db):
    alice = signup(client, "Alice")
    for number in range(SETTINGS.devices_per_user_max):
        assert alice.post("/v1/devices", {"name": f"d{number}"}, key=None).status_code == 201
    before = rows(pg_db)
    over = alice.post("/v1/devices", {"name": "one too many"}, key=None)
    assert over.status_code == 422 and over.json()["error"]["code"] == "devices_limit"
    assert rows(pg_db) == before


def test_other_users_devices_are_not_found(client, pg_db):
    alice, mallory = signup(client, "Alice"), signup(client, "Mallory")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    before = rows(pg_db)
    revoke = client.delete(f"/v1/devices/{device['device_id']}", headers=mallory.headers())
    assert revoke.status_code == 404 and revoke.json()["error"]["code"] == "device_not_found"
    code = mallory.post("/v1/payment-codes", {"device_id": device["device_id"]}, key=None)
    assert code.status_code == 404 and code.json()["error"]["code"] == "device_not_found"
    assert mallory.get("/v1/devices").json()["items"] == []
    assert rows(pg_db) == before
    assert alice.get("/v1/devices").json()["items"][0]["status"] == "active"


def test_operators_are_not_wallet_users(client, pg_db):
    admin = operator(client, pg_db, "admin")
    before = rows(pg_db)
    for method, path, body in (
        ("POST", "/v1/devices", {"name": "console"}),
        ("GET", "/v1/devices", None),
        ("DELETE", "/v1/devices/d_" + "0" * 24, None),
        ("POST", "/v1/payment-codes", {}),
    ):
        response = client.request(method, path, json=body, headers=admin.headers())
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "wallet_users_only"
    assert rows(pg_db) == before


def test_sixteen_threads_consuming_one_code_one_wins(client, pg_db):
    """Race-safe: one row per used code; on PostgreSQL the losers wait for the winner's commit
    and then see the row."""
    import threading

    alice = signup(client, "Alice")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    now = datetime.now(UTC)
    code = offline_code(device["issuer_id"], device["locator"], device["secret"], now.timestamp())
    barrier = threading.Barrier(16)
    outcomes: list[str] = []
    lock = threading.Lock()

    def charge() -> None:
        barrier.wait()
        try:
            resolve(pg_db, code, now)
            outcome = "accepted"
        except service.DomainError as refused:
            outcome = refused.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=charge) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["accepted"] + ["payment_code_used"] * 15
    with pg_db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(CodeUse)).scalar_one() == 1


def test_a_refused_charge_gives_the_code_back(client, pg_db):
    """The use is a row of the charge's transaction: a charge refused after resolving the code
    (say, insufficient funds) rolls it back, and the code can be used again."""
    alice = signup(client, "Alice")
    device = alice.post("/v1/devices", {"name": "phone"}, key=None).json()
    now = datetime.now(UTC)
    code = offline_code(device["issuer_id"], device["locator"], device["secret"], now.timestamp())
    factory = db.make_session_factory(pg_db)
    with pytest.raises(service.DomainError), db.unit_of_work(factory) as session:
        service.resolve_and_consume(
            session=session,
            code=code,
            settings=SETTINGS,
            keyring=make_settings(pg_db).auth.vault,
            now=now,
        )
        raise service.DomainError("the charge was refused", code="insufficient_funds")
    assert resolve(pg_db, code, now).user_id == alice.user_id


def test_concurrent_first_codes_make_one_default_device(client, live_url, pg_db):
    import threading

    import httpx

    alice = signup(client, "Alice")
    barrier = threading.Barrier(8)
    devices: list[str] = []

    def ask() -> None:
        with httpx.Client(base_url=live_url, timeout=60) as http:
            barrier.wait()
            response = http.post("/v1/payment-codes", json={}, headers=alice.headers())
            assert response.status_code == 201, response.text
            devices.append(response.json()["device_id"])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(devices) == 8 and len(set(devices)) == 1
    assert len(alice.get("/v1/devices").json()["items"]) == 1
