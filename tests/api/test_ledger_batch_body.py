"""The batch route's body read without a model per item (api/batch_body.py, issue #14): it takes
only what ``TransferIn`` takes, as ``TransferIn`` would hold it; anything else goes to FastAPI
untouched, so refusals stay the route's own; and the same batch gets the same answer whichever
way it was read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from strongroom.api import batch_body
from strongroom.api.batch_body import BatchItem, read_items
from strongroom.ledger.schemas import TransferIn
from tests.api.service_keys import ledger_integration

PLAIN: dict[str, Any] = {
    "debit_account_id": 1,
    "credit_account_id": 2,
    "asset": "HKD",
    "amount": "0.01",
}
ITEMS: list[dict[str, Any]] = [
    PLAIN,
    {},
    PLAIN | {"id": "a" * 64, "pending_id": "p" * 64, "note": "n" * 280, "code": "a_9"},
    PLAIN | {"kind": "pending", "timeout_s": 30, "linked": True},
    PLAIN | {"kind": "no_such_kind", "amount": 5, "asset": None},  # the ledger's refusals
    PLAIN | {"debit_account_id": None, "timeout_s": None, "note": None, "id": None},
    PLAIN | {"debit_account_id": "1"},  # from here on: TransferIn refuses, or might
    PLAIN | {"debit_account_id": True},
    PLAIN | {"debit_account_id": 0},
    PLAIN | {"debit_account_id": 2**63},
    PLAIN | {"debit_account_id": 1.0},
    PLAIN | {"timeout_s": "5"},
    PLAIN | {"timeout_s": False},
    PLAIN | {"timeout_s": 5.0},
    PLAIN | {"code": "A"},
    PLAIN | {"code": "ab\n"},
    PLAIN | {"code": ""},
    PLAIN | {"code": None},
    PLAIN | {"code": "a" * 33},
    PLAIN | {"id": "a" * 65},
    PLAIN | {"id": 5},
    PLAIN | {"pending_id": "p" * 65},
    PLAIN | {"note": "n" * 281},
    PLAIN | {"note": 5},
    PLAIN | {"asset": 5},
    PLAIN | {"kind": 5},
    PLAIN | {"kind": None},
    PLAIN | {"linked": 1},
    PLAIN | {"linked": "true"},
    PLAIN | {"unknown_field": 1},
]


def _model(item: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return TransferIn.model_validate(item).model_dump()
    except ValidationError:
        return None


@pytest.mark.parametrize("item", ITEMS)
def test_an_item_is_read_only_as_transfer_in_would_read_it(item: dict[str, Any]):
    read = read_items(json.dumps({"transfers": [PLAIN, item]}).encode())
    if read is None:  # FastAPI reads it: always allowed
        return
    assert _model(item) is not None, "read here, refused by TransferIn"
    assert read[1]._asdict() == _model(item)
    assert read[0]._asdict() == _model(PLAIN)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"transfers": {}}',
        b'{"transfers": [1]}',
        b'{"transfers": [], "more": 1}',
        b'{"transfers": [{"debit_account_id": "1"}]}',
    ],
)
def test_any_other_body_goes_to_fastapi(body: bytes):
    assert read_items(body) is None


def test_plain_items_are_read_here_and_odd_ones_there(client, pg_db):
    """Every plain item: read here (an 8,001-item batch is refused with the route's answer);
    one odd item sends the whole body to FastAPI, whose refusal is unchanged."""
    integration = ledger_integration(client, pg_db)
    too_many = integration.post("/v1/admin/ledger/transfers", {"transfers": [PLAIN] * 8001})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "batch_too_large"
    odd = integration.post(
        "/v1/admin/ledger/transfers", {"transfers": [PLAIN, PLAIN | {"debit_account_id": "1"}]}
    )
    assert odd.status_code == 422
    assert odd.json()["error"]["code"] == "validation_error"


def test_one_batch_gets_one_answer_whichever_way_it_is_read(client, pg_db, monkeypatch):
    integration = ledger_integration(client, pg_db)
    read: list[bool] = []

    def counted(body: bytes) -> list[BatchItem] | None:
        items = read_items(body)
        read.append(items is not None)
        return items

    monkeypatch.setattr(batch_body, "read_items", counted)
    answers = []
    for run in ("plain", "model"):  # a charset parameter: BatchBody leaves it to FastAPI
        ids = []
        for i in range(3):
            made = integration.post(
                "/v1/admin/ledger/accounts",
                {
                    "owner_type": "operator",
                    "owner_id": f"ops-{run}",
                    "kind": f"float_{i}",
                    "asset": "HKD",
                    "allow_negative": i == 0,
                },
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        source, a, b = ids
        transfers = [
            {"debit_account_id": source, "credit_account_id": a, "asset": "HKD", "amount": "5.00"},
            {"debit_account_id": a, "credit_account_id": b, "asset": "HKD", "amount": "9.00"},
            PLAIN | {"debit_account_id": a, "credit_account_id": b, "linked": True},
            PLAIN | {"debit_account_id": a, "credit_account_id": b, "kind": "pending"},
            PLAIN | {"id": f"{run}-1", "debit_account_id": a, "credit_account_id": b},
        ]
        content_type = "application/json" if run == "plain" else "application/json; charset=utf-8"
        answer = client.post(
            "/v1/admin/ledger/transfers",
            content=json.dumps({"transfers": transfers}),
            headers={"X-Api-Key": integration.key, "Content-Type": content_type},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        for result in body["results"]:
            result.pop("id")
            if result["error"]:
                result["error"]["details"].pop("account_id", None)  # this run's accounts
        answers.append(body)
    assert read == [True]  # the first batch was read here, the second by FastAPI
    assert answers[0] == answers[1]
    assert [r["status"] for r in answers[0]["results"]] == ["created", "failed"] + ["created"] * 3
