"""Institutional KYC seen through the operator API (R-KYC-4, R-KYC-5): an institutional
submission (made on the web only; here through ``kyc.institutional.submit``, the service the web
form calls) is in the same queue, its detail carries the organisation and the members, approval
sets the tier ``institutional`` (no personal level is open afterwards); the public API still
refuses an institutional level; one pending institutional application at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.errors import DomainError
from strongroom.identity.models import User
from strongroom.kyc import institutional, service
from strongroom.kyc.models import Submission
from strongroom.settings import KycSettings, Settings
from tests.api.conftest import Caller, make_settings, operator, signup
from tests.api.kyc_support import PRIMARY_FIELDS, counts, minimal_pdf, noise_image, submit


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    return tmp_path / "kyc-documents"


@pytest.fixture
def settings(pg_db: Engine, documents_dir: Path) -> Settings:
    return make_settings(pg_db).model_copy(
        update={"kyc": KycSettings(documents_dir=str(documents_dir))}
    )


@pytest.fixture
def client(pg_db: Engine, settings: Settings) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings, pg_db)
    with TestClient(app) as test_client:
        yield test_client


def application(**changes: object) -> institutional.InstitutionalApplication:
    values: dict[str, object] = {
        "name": "Harbour Trading Limited",
        "registration_number": "CR-1234567",
        "incorporation_country": "hk",
        "incorporated_on": "2015-03-02",
        "organisation_type": "company",
        "registered_address": "1 Harbour Road\n  Wan Chai ",
        "registered_country": "HK",
        "business_address": "9 Sheung Yuet Road",
        "business_country": "HK",
        "declaration": True,
        "members": [
            institutional.MemberEntry(
                role="authorised_representative",
                legal_name="Chan Tai Man",
                date_of_birth="1980-04-01",
                nationality="HK",
                document_number="A123456(7)",
                document=noise_image("JPEG"),
            ),
            institutional.MemberEntry(
                role="beneficial_owner",
                legal_name="Lee Siu Ming",
                date_of_birth="1975-09-12",
                nationality="GB",
                document_number="P9876543",
                ownership="25.5 %",
                document=minimal_pdf(),
            ),
        ],
        "files": {"board_resolution": minimal_pdf(), "ownership_structure": noise_image("PNG")},
    }
    return institutional.InstitutionalApplication(**(values | changes))  # type: ignore[arg-type]


def apply(engine: Engine, settings: Settings, user_id: str, **changes: object) -> int:
    with db.unit_of_work(db.make_session_factory(engine)) as session:
        row = institutional.submit(
            session=session,
            user=session.get_one(User, user_id),
            application=application(**changes),
            settings=settings.kyc,
            vault=service.vault_for(settings.kyc, settings.auth.vault),
        )
        return row.id


def test_an_institutional_submission_through_the_operator_api(
    client: TestClient, pg_db: Engine, settings: Settings, documents_dir: Path
) -> None:
    user = signup(client, "Harbour")
    reviewer: Caller = operator(client, pg_db, role="kyc_reviewer")
    refused = submit(user, PRIMARY_FIELDS | {"level": "institutional"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_level"

    submission_id = apply(pg_db, settings, user.user_id)
    before = counts(pg_db, documents_dir)
    with pytest.raises(DomainError) as pending:
        apply(pg_db, settings, user.user_id)
    assert pending.value.code == "kyc_submission_pending"
    assert counts(pg_db, documents_dir) == before

    [item] = reviewer.get("/v1/admin/kyc/submissions", status="pending").json()["items"]
    assert (item["id"], item["level"]) == (submission_id, "institutional")
    shown = reviewer.get(f"/v1/admin/kyc/submissions/{submission_id}").json()
    assert shown["legal_name"] is None and shown["document_type"] is None
    assert shown["organisation"] == {
        "name": "Harbour Trading Limited",
        "registration_number": "CR-1234567",
        "incorporation_country": "HK",
        "incorporated_on": "2015-03-02",
        "organisation_type": "company",
        "registered_address": "1 Harbour Road\nWan Chai",
        "registered_country": "HK",
        "business_address": "9 Sheung Yuet Road",
        "business_country": "HK",
    }
    assert [(m["position"], m["role"], m["ownership_bps"]) for m in shown["members"]] == [
        (1, "authorised_representative", None),
        (2, "beneficial_owner", 2550),
    ]
    kinds = {d["kind"]: d["content_type"] for d in shown["documents"]}
    assert kinds == {
        "board_resolution": "application/pdf",
        "ownership_structure": "image/png",
        "member_1": "image/jpeg",
        "member_2": "application/pdf",
    }
    assert user.get(f"/v1/admin/kyc/submissions/{submission_id}").status_code == 403

    approved = reviewer.post(f"/v1/admin/kyc/submissions/{submission_id}/approve", {}, key=None)
    assert approved.status_code == 200, approved.text
    assert user.get("/v1/me").json()["kyc_tier"] == "institutional"
    again = submit(user, PRIMARY_FIELDS)
    assert again.status_code == 409 and again.json()["error"]["code"] == "kyc_tier_reached"
    with pytest.raises(DomainError) as reached:
        apply(pg_db, settings, user.user_id)
    assert reached.value.code == "kyc_tier_reached"


def test_a_personal_submission_has_no_organisation(client: TestClient, pg_db: Engine) -> None:
    user = signup(client, "Person")
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    submitted = submit(user, PRIMARY_FIELDS)
    assert submitted.status_code == 201
    shown = reviewer.get(f"/v1/admin/kyc/submissions/{submitted.json()['id']}").json()
    assert shown["organisation"] is None and shown["members"] == []


def test_an_advanced_user_may_become_institutional(
    client: TestClient, pg_db: Engine, settings: Settings
) -> None:
    user = signup(client, "Advanced")
    with db.unit_of_work(db.make_session_factory(pg_db)) as session:
        session.get_one(User, user.user_id).kyc_tier = "advanced"
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    with pytest.raises(DomainError) as too_old:
        apply(pg_db, settings, user.user_id, incorporated_on="1599-12-31")
    assert too_old.value.details["field"] == "incorporated_on"
    submission_id = apply(pg_db, settings, user.user_id, incorporated_on="1865-03-03")
    reviewer.post(f"/v1/admin/kyc/submissions/{submission_id}/approve", {}, key=None)
    with db.make_session_factory(pg_db)() as session:
        tier = session.scalars(select(User.kyc_tier).where(User.id == user.user_id)).one()
        status = session.get_one(Submission, submission_id).status
    assert (tier, status) == ("institutional", "approved")
