"""The verify page's proof-only credential (issue #10, finding 6): minted by a signed-in user (the
API with a bearer token, or the verify page's own POST with the session cookie and CSRF), it
reads that user's proof of that audit for a few minutes and nothing else. What a thief who
steals one gets: 401 on everything but that proof, and 401 once it expired."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import httpx
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.api.reserves import PROOF_TOKEN_TTL_S, mint_proof_token
from tests.api.conftest import PASSWORD, make_settings

from .conftest import (
    AUDIT_ID,
    Published,
    WebUser,
    csrf_token,
    fingerprint,
    new_client,
    web_sign_in,
)


def _mint(live_url: str, token: str, audit_id: str = AUDIT_ID) -> httpx.Response:
    return httpx.post(
        f"{live_url}/v1/reserves/proof-tokens",
        json={"audit_id": audit_id},
        headers={"Authorization": f"Bearer {token}"},
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_proof_token_reads_its_proof_and_nothing_else(
    live_url: str, published: Published, pg_db: Engine
) -> None:
    alice = published.alice
    minted = _mint(live_url, alice.token)
    assert minted.status_code == 201, minted.text
    body = minted.json()
    proof_only = body["token"]
    assert proof_only.startswith("prf1.") and body["audit_id"] == AUDIT_ID
    with httpx.Client(base_url=live_url) as client:
        proof = client.get(f"/v1/reserves/{AUDIT_ID}/proof", headers=_bearer(proof_only))
        assert proof.status_code == 200
        assert proof.json() == published.proof(alice)
        before = fingerprint(pg_db)
        key = {"Idempotency-Key": uuid.uuid4().hex}
        transfer = {"to": published.bob.email, "asset": "HKD", "amount": "1.00"}
        for method, path, extra in (
            ("GET", "/v1/me", {}),
            ("GET", "/v1/balances", {}),
            ("GET", "/v1/transactions", {}),
            ("GET", "/v1/me/sessions", {}),
            ("POST", "/v1/transfers", {"json": transfer, "headers": key}),
            ("POST", "/v1/reserves/proof-tokens", {"json": {"audit_id": AUDIT_ID}}),
            ("POST", "/v1/auth/logout", {}),
        ):
            headers = {**_bearer(proof_only), **extra.pop("headers", {})}
            answer = client.request(method, path, headers=headers, **extra)
            assert answer.status_code == 401, (method, path, answer.text)
        assert fingerprint(pg_db) == before
        # Alice's own token still works: the proof token took nothing from her session
        assert client.get("/v1/me", headers=_bearer(alice.token)).status_code == 200


def test_a_proof_token_is_bound_to_its_audit_its_user_and_its_minutes(
    live_url: str, published: Published, pg_db: Engine
) -> None:
    settings = make_settings(pg_db)
    alice, bob = published.alice, published.bob
    with httpx.Client(base_url=live_url) as client:

        def read(token: str, audit_id: str = AUDIT_ID) -> httpx.Response:
            return client.get(f"/v1/reserves/{audit_id}/proof", headers=_bearer(token))

        other_audit = mint_proof_token(
            settings, user_id=alice.user_id, audit_id="2026-11-01", now=db.utcnow()
        ).token
        refused = read(other_audit)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
        # changing the user inside the token breaks its signature: no reading Bob's proof
        mine = _mint(live_url, alice.token).json()["token"]
        prefix, payload, mac = mine.split(".")
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged_fields = {**fields, "u": bob.user_id}
        forged_payload = base64.urlsafe_b64encode(json.dumps(forged_fields).encode()).decode()
        forged = f"{prefix}.{forged_payload.rstrip('=')}.{mac}"
        assert read(forged).status_code == 401
        # another installation's secret key: not ours
        foreign = settings.model_copy(update={"secret_key": "another-secret-key-0123456789"})
        stranger = mint_proof_token(
            foreign, user_id=bob.user_id, audit_id=AUDIT_ID, now=db.utcnow()
        )
        assert read(stranger.token).status_code == 401
        # minutes: one minted just over its life ago is refused
        old = mint_proof_token(
            settings,
            user_id=alice.user_id,
            audit_id=AUDIT_ID,
            now=db.utcnow() - timedelta(seconds=PROOF_TOKEN_TTL_S + 1),
        )
        expired = read(old.token)
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
        fresh = mint_proof_token(
            settings, user_id=alice.user_id, audit_id=AUDIT_ID, now=db.utcnow()
        )
        assert read(fresh.token).status_code == 200
        assert PROOF_TOKEN_TTL_S <= 10 * 60
    unknown = _mint(live_url, alice.token, "1999-01-01")
    assert unknown.status_code == 404
    assert _mint(live_url, "not-a-token").status_code == 401


def test_the_verify_page_mints_with_the_session_cookie_and_csrf_only(
    live_url: str, published: Published
) -> None:
    with new_client(live_url) as browser:
        page = browser.get("/reserves/verify")
        token = csrf_token(page.text)
        stranger = browser.post(
            "/reserves/proof-token", data={"audit_id": AUDIT_ID}, headers={"X-CSRF-Token": token}
        )
        assert stranger.status_code == 401  # not signed in
        user = WebUser(email=published.alice.email, password=PASSWORD, name="Alice")
        web_sign_in(browser, user)
        page = browser.get("/reserves/verify")
        assert published.alice.email in page.text
        no_csrf = browser.post("/reserves/proof-token", data={"audit_id": AUDIT_ID})
        assert no_csrf.status_code == 403
        minted = browser.post(
            "/reserves/proof-token",
            data={"audit_id": AUDIT_ID},
            headers={"X-CSRF-Token": csrf_token(page.text)},
        )
        assert minted.status_code == 201 and minted.headers["cache-control"] == "no-store"
        proof_only = minted.json()["token"]
    answer = httpx.get(f"{live_url}/v1/reserves/{AUDIT_ID}/proof", headers=_bearer(proof_only))
    assert answer.status_code == 200 and answer.json() == published.proof(published.alice)
    assert httpx.get(f"{live_url}/v1/me", headers=_bearer(proof_only)).status_code == 401
