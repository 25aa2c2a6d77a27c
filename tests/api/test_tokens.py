"""Virtual card numbers (R-TOKEN-1): create, list, read, suspend, resume, delete; Luhn-valid
16 digits from the BIN range, unique, stored sealed; the charge path's ``resolve``."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.db import Base
from strongroom.errors import DomainError
from strongroom.identity.models import AuditEvent
from strongroom.tokens import domain, service
from strongroom.tokens.models import VirtualCard
from tests.api.conftest import make_settings, operator, signup


def rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != AuditEvent.__tablename__
        }


def resolve(engine: Engine, number: str, merchant_id: str | None = None) -> service.Owner:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        return service.resolve(
            session=session, number=number, settings=make_settings(engine), merchant_id=merchant_id
        )


def refusal(engine: Engine, number: str, merchant_id: str | None = None) -> str:
    with pytest.raises(DomainError) as refused:
        resolve(engine, number, merchant_id)
    return refused.value.code


def luhn_reference(number: str) -> bool:
    digits = [int(d) for d in number]
    for index in range(len(digits) - 2, -1, -2):
        digits[index] = sum(divmod(digits[index] * 2, 10))
    return sum(digits) % 10 == 0


def test_luhn() -> None:
    assert domain.luhn_valid("4111111111111111") and domain.luhn_valid("79927398713")
    assert not domain.luhn_valid("4111111111111112") and not domain.luhn_valid("")
    for _ in range(200):
        number = domain.new_number("48950000", "48959999")
        assert len(number) == 16 and number.startswith("4895") and luhn_reference(number)
    assert domain.new_number("123456", "123456").startswith("123456")


def test_a_card_is_created_listed_and_read_by_its_owner_only(client, pg_db):
    alice = signup(client, "Alice")
    created = alice.post("/v1/tokens", {}, key=None)
    assert created.status_code == 201, created.text
    card = created.json()
    number = card["number"]
    assert len(number) == 16 and luhn_reference(number) and number.startswith("4895")
    assert card["last4"] == number[-4:] and card["status"] == "active"
    assert card["merchant_id"] is None
    with pg_db.connect() as connection:
        stored = connection.execute(select(VirtualCard)).one()
    assert number not in stored.number_sealed and number not in stored.number_digest
    listed = alice.get("/v1/tokens").json()["items"]
    assert listed == [{k: v for k, v in card.items() if k != "number"}]
    assert alice.get(f"/v1/tokens/{card['id']}").json()["number"] == number
    owner = resolve(pg_db, number)
    assert (owner.user_id, owner.token_id, owner.last4) == (alice.user_id, card["id"], number[-4:])
    assert resolve(pg_db, number[:4] + " " + number[4:]).token_id == card["id"]


def test_numbers_are_unique(client, pg_db):
    alice = signup(client, "Alice")
    numbers = {alice.post("/v1/tokens", {}, key=None).json()["number"] for _ in range(10)}
    assert len(numbers) == 10


def test_suspend_resume_delete(client, pg_db):
    alice = signup(client, "Alice")
    card = alice.post("/v1/tokens", {}, key=None).json()
    suspended = alice.post(f"/v1/tokens/{card['id']}/suspend", {}, key=None)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    assert refusal(pg_db, card["number"]) == "token_suspended"
    resumed = alice.post(f"/v1/tokens/{card['id']}/resume", {}, key=None)
    assert resumed.json()["status"] == "active"
    assert resolve(pg_db, card["number"]).user_id == alice.user_id
    deleted = client.delete(f"/v1/tokens/{card['id']}", headers=alice.headers())
    assert deleted.status_code == 204
    assert refusal(pg_db, card["number"]) == "token_invalid"
    assert alice.get("/v1/tokens").json()["items"] == []
    gone = alice.get(f"/v1/tokens/{card['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "token_not_found"
    again = alice.post(f"/v1/tokens/{card['id']}/resume", {}, key=None)
    assert again.status_code == 404


def test_a_merchant_restriction_is_kept(client, pg_db):
    alice = signup(client, "Alice")
    card = alice.post("/v1/tokens", {"merchant_id": "m_shop-1"}, key=None).json()
    assert card["merchant_id"] == "m_shop-1"
    assert resolve(pg_db, card["number"], "m_shop-1").token_id == card["id"]
    assert refusal(pg_db, card["number"], "m_other") == "token_merchant_mismatch"
    assert refusal(pg_db, card["number"]) == "token_merchant_mismatch"


def test_numbers_that_are_not_ours_are_invalid(client, pg_db):
    assert refusal(pg_db, "4111111111111111") == "token_invalid"
    assert refusal(pg_db, "4111111111111112") == "token_invalid"
    assert refusal(pg_db, "41111111") == "token_invalid"
    assert refusal(pg_db, "abcd") == "token_invalid"


def test_bad_input_is_refused_and_changes_nothing(client, pg_db):
    alice = signup(client, "Alice")
    before = rows(pg_db)
    for body in ({"merchant_id": ""}, {"merchant_id": "a b"}, {"merchant_id": "x" * 65},
                 {"merchant_id": 7}, {"other": 1}):  # fmt: skip
        response = alice.post("/v1/tokens", body, key=None)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert alice.get("/v1/tokens/nope").status_code == 422
    assert rows(pg_db) == before


def test_cards_are_limited_per_user(client, pg_db):
    alice = signup(client, "Alice")
    limit = make_settings(pg_db).virtual_cards.tokens_per_user_max
    for _ in range(limit):
        assert alice.post("/v1/tokens", {}, key=None).status_code == 201
    before = rows(pg_db)
    over = alice.post("/v1/tokens", {}, key=None)
    assert over.status_code == 422 and over.json()["error"]["code"] == "tokens_limit"
    assert rows(pg_db) == before


def test_other_users_cards_are_not_found(client, pg_db):
    alice, mallory = signup(client, "Alice"), signup(client, "Mallory")
    card = alice.post("/v1/tokens", {}, key=None).json()
    before = rows(pg_db)
    for method, path in (
        ("GET", f"/v1/tokens/{card['id']}"),
        ("POST", f"/v1/tokens/{card['id']}/suspend"),
        ("POST", f"/v1/tokens/{card['id']}/resume"),
        ("DELETE", f"/v1/tokens/{card['id']}"),
    ):
        response = client.request(method, path, headers=mallory.headers())
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "token_not_found"
        assert card["number"] not in response.text
    assert mallory.get("/v1/tokens").json()["items"] == []
    assert rows(pg_db) == before
    assert alice.get(f"/v1/tokens/{card['id']}").json()["status"] == "active"


def test_operators_are_not_wallet_users(client, pg_db):
    admin = operator(client, pg_db, "admin")
    before = rows(pg_db)
    for method, path in (
        ("POST", "/v1/tokens"),
        ("GET", "/v1/tokens"),
        ("GET", "/v1/tokens/vc_" + "0" * 24),
        ("DELETE", "/v1/tokens/vc_" + "0" * 24),
    ):
        response = client.request(method, path, json=None, headers=admin.headers())
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "wallet_users_only"
    assert rows(pg_db) == before
