"""KYC over HTTP (issue #11 points 1-3; SPEC R-KYC-1..5, §13 wave 2): submissions with their
documents, the encrypted document vault, the review queue, the emails; and bad input that
changes nothing (no row, no file)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity.models import AuditEvent
from strongroom.kyc.models import Document
from strongroom.notify import delivery
from strongroom.settings import KycSettings, Settings
from tests.api.conftest import PASSWORD, Caller, make_settings, operator, signup
from tests.api.kyc_support import (
    EXECUTABLE,
    EXIF_MARKER,
    PRIMARY_FIELDS,
    counts,
    minimal_pdf,
    noise_image,
    stored_files,
    submit,
)
from tests.integration.identity.conftest import SmtpServer, free_port

DOCUMENT_MAX_BYTES = 100_000


def kyc_settings(engine: Engine, documents_dir: Path, smtp_port: int | None = None) -> Settings:
    base = make_settings(engine)
    update: dict[str, object] = {
        "kyc": KycSettings(documents_dir=str(documents_dir), document_max_bytes=DOCUMENT_MAX_BYTES)
    }
    if smtp_port is not None:
        update |= {"smtp_host": "127.0.0.1", "smtp_port": smtp_port}
    return base.model_copy(update=update)


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    return tmp_path / "kyc-documents"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def kyc_app(pg_db: Engine, documents_dir: Path, smtp: SmtpServer) -> FastAPI:
    return create_app(kyc_settings(pg_db, documents_dir, smtp.port), pg_db)


@pytest.fixture
def client(kyc_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(kyc_app) as test_client:
        yield test_client


def deliver(app: FastAPI, engine: Engine) -> None:
    delivery.deliver_once(db.make_session_factory(engine), app.state.settings)


def detail(reviewer: Caller, submission_id: int) -> dict[str, object]:
    response = reviewer.get(f"/v1/admin/kyc/submissions/{submission_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_primary_then_advanced_end_to_end(
    client: TestClient, kyc_app: FastAPI, pg_db: Engine, smtp: SmtpServer
) -> None:
    user = signup(client, "Kyc User")
    code = client.put(
        "/v1/me/anti-phishing-code",
        json={"code": "Ab12Z9", "password": PASSWORD},
        headers=user.headers(),
    )
    assert code.status_code == 204, code.text
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    assert user.get("/v1/me").json()["kyc_tier"] == "unverified"

    submitted = submit(user, PRIMARY_FIELDS)
    assert submitted.status_code == 201, submitted.text
    primary_id = submitted.json()["id"]
    assert submitted.json() == {"id": primary_id, "status": "pending"}
    mine = user.get("/v1/kyc").json()
    assert mine["tier"] == "unverified"
    assert [(s["id"], s["level"], s["status"], s["reason"]) for s in mine["submissions"]] == [
        (primary_id, "primary", "pending", None)
    ]

    queue = reviewer.get("/v1/admin/kyc/submissions", status="pending")
    assert queue.status_code == 200, queue.text
    [item] = queue.json()["items"]
    assert item["id"] == primary_id and item["user_id"] == user.user_id
    assert item["level"] == "primary" and item["overdue"] is False
    assert 0 <= item["age_seconds"] < 3600

    shown = detail(reviewer, primary_id)
    assert shown["legal_name"] == "Chan Tai Man" and shown["date_of_birth"] == "1990-04-01"
    kinds = {d["kind"]: d for d in shown["documents"]}  # type: ignore[attr-defined]
    assert set(kinds) == {"front", "back"}
    front = reviewer.get(f"/v1/admin/kyc/documents/{kinds['front']['id']}")
    assert front.status_code == 200
    assert front.headers["content-type"] == "image/jpeg"
    assert front.headers["cache-control"] == "no-store"
    assert front.headers["content-disposition"].startswith("inline;")
    assert front.headers["x-content-type-options"] == "nosniff"
    assert front.headers["content-security-policy"] == "default-src 'none'; sandbox"
    with Image.open(io.BytesIO(front.content)) as image:
        assert image.format == "JPEG" and image.size == (64, 64)
        assert dict(image.getexif()) == {}
    assert EXIF_MARKER.encode() not in front.content

    approved = reviewer.post(f"/v1/admin/kyc/submissions/{primary_id}/approve", {}, key=None)
    assert approved.status_code == 200, approved.text
    assert approved.json() == {"id": primary_id, "status": "approved"}
    assert user.get("/v1/me").json()["kyc_tier"] == "primary"
    assert user.get("/v1/kyc").json()["tier"] == "primary"

    # advanced on top of the approved primary: document type, selfie, residence only
    selfie = {"selfie": ("me.jpg", noise_image("JPEG"), "image/jpeg")}
    advanced_fields = {"level": "advanced", "document_type": "id_card", "residence_country": "hk"}
    advanced = submit(user, advanced_fields, selfie)
    assert advanced.status_code == 201, advanced.text
    advanced_id = advanced.json()["id"]
    shown = detail(reviewer, advanced_id)
    assert shown["based_on_id"] == primary_id and shown["residence_country"] == "HK"
    assert shown["legal_name"] == "Chan Tai Man" and shown["document_number"] == "A123456(7)"
    assert sorted(d["kind"] for d in shown["documents"]) == ["back", "front", "selfie"]  # type: ignore[attr-defined]

    reason = "The selfie does not show your face clearly."
    rejected = reviewer.post(
        f"/v1/admin/kyc/submissions/{advanced_id}/reject", {"reason": reason}, key=None
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json() == {"id": advanced_id, "status": "rejected"}
    assert user.get("/v1/me").json()["kyc_tier"] == "primary"
    history = user.get("/v1/kyc").json()["submissions"]
    assert (history[0]["id"], history[0]["status"], history[0]["reason"]) == (
        advanced_id,
        "rejected",
        reason,
    )

    again = submit(user, advanced_fields, {"selfie": ("me2.png", noise_image("PNG"), "x/y")})
    assert again.status_code == 201, again.text
    assert reviewer.post(
        f"/v1/admin/kyc/submissions/{again.json()['id']}/approve", {}, key=None
    ).json() == {"id": again.json()["id"], "status": "approved"}
    assert user.get("/v1/me").json()["kyc_tier"] == "advanced"

    deliver(kyc_app, pg_db)
    results = [m for m in smtp.inbox.to(user.email) if "identity verification" in m["Subject"]]
    assert len(results) == 3, [m["Subject"] for m in smtp.inbox.to(user.email)]
    texts = [m.get_body(preferencelist=("plain",)).get_content() for m in results]  # type: ignore[union-attr]
    for text in texts:
        assert text.lstrip().startswith("Anti-phishing code: Ab12Z9"), text[:200]
    assert "primary identity verification is approved" in texts[0]
    assert "could not approve your advanced" in texts[1] and reason in texts[1]
    assert "advanced identity verification is approved" in texts[2]


def test_advanced_without_primary_asks_for_everything(client: TestClient, pg_db: Engine) -> None:
    user = signup(client, "Skipper")
    fields = {**PRIMARY_FIELDS, "level": "advanced", "residence_country": "GB"}
    missing = submit(user, fields)
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "document_required"
    assert missing.json()["error"]["details"]["field"] == "selfie"
    files = {
        "front": ("f.jpg", noise_image("JPEG"), "image/jpeg"),
        "back": ("b.jpg", noise_image("JPEG"), "image/jpeg"),
        "selfie": ("s.jpg", noise_image("JPEG"), "image/jpeg"),
    }
    made = submit(user, fields, files)
    assert made.status_code == 201, made.text
    reviewer = operator(client, pg_db, role="admin")
    shown = detail(reviewer, made.json()["id"])
    assert shown["level"] == "advanced" and shown["based_on_id"] is None
    approved = reviewer.post(f"/v1/admin/kyc/submissions/{made.json()['id']}/approve", {})
    assert approved.status_code == 200
    assert user.get("/v1/me").json()["kyc_tier"] == "advanced"
    again = submit(user, {**PRIMARY_FIELDS})
    assert again.status_code == 409 and again.json()["error"]["code"] == "kyc_tier_reached"


def test_stored_files_hold_no_plaintext_and_a_flipped_byte_is_detected(
    client: TestClient, pg_db: Engine, documents_dir: Path
) -> None:
    user = signup(client, "Vaulted")
    front_bytes = noise_image("PNG", exif=False)
    back_bytes = noise_image("JPEG")
    files = {
        "front": ("front.png", front_bytes, "image/png"),
        "back": ("back.jpg", back_bytes, "image/jpeg"),
    }
    made = submit(user, PRIMARY_FIELDS, files)
    assert made.status_code == 201, made.text
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    documents = detail(reviewer, made.json()["id"])["documents"]
    served = {
        d["kind"]: reviewer.get(f"/v1/admin/kyc/documents/{d['id']}").content  # type: ignore[index]
        for d in documents  # type: ignore[attr-defined]
    }
    stored = stored_files(documents_dir)
    assert len(stored) == 2
    for path in stored:
        sealed = path.read_bytes()
        assert path.stat().st_mode & 0o077 == 0, "readable by the owner only"
        for plain in (front_bytes, back_bytes, *served.values()):
            for start in range(0, len(plain) - 32, 512):
                assert plain[start : start + 32] not in sealed
        assert b"PNG" not in sealed[:16] and b"JFIF" not in sealed and b"IHDR" not in sealed

    with db.make_session_factory(pg_db)() as session:
        front = session.scalars(select(Document).where(Document.kind == "front")).one()
        path = next(p for p in stored if p.name == front.storage_key)
    flipped = bytearray(path.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    refused = reviewer.get(f"/v1/admin/kyc/documents/{front.id}")
    assert refused.status_code == 500
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"]["code"] == "document_unreadable"
    assert front_bytes[:64] not in refused.content

    path.unlink()
    gone = reviewer.get(f"/v1/admin/kyc/documents/{front.id}")
    assert gone.json()["error"]["code"] == "document_unreadable"


def test_every_view_is_audited(client: TestClient, pg_db: Engine) -> None:
    user = signup(client, "Audited")
    made = submit(user, PRIMARY_FIELDS)
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    documents = detail(reviewer, made.json()["id"])["documents"]
    ids = [d["id"] for d in documents]  # type: ignore[attr-defined]
    for document_id in [*ids, ids[0]]:
        assert reviewer.get(f"/v1/admin/kyc/documents/{document_id}").status_code == 200
    with db.make_session_factory(pg_db)() as session:
        views = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "kyc.document_viewed")
                .order_by(AuditEvent.id)
            )
        )
        requests = session.scalars(
            select(AuditEvent.details_json).where(AuditEvent.actor_id == reviewer.user_id)
        ).all()
    assert [v.actor_id for v in views] == [reviewer.user_id] * 3
    assert {v.subject_user_id for v in views} == {user.user_id}
    assert [
        f'"document_id": {i}' in (v.details_json or "")
        for v, i in zip(views, [*ids, ids[0]], strict=True)
    ] == [True] * 3
    assert sum(f"/v1/admin/kyc/submissions/{made.json()['id']}" in r for r in requests) >= 1


@pytest.mark.parametrize("role", ["support", "finance"])
def test_operators_without_the_role_get_403_and_change_nothing(
    client: TestClient, pg_db: Engine, documents_dir: Path, role: str
) -> None:
    user = signup(client, "Subject")
    made = submit(user, PRIMARY_FIELDS)
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    document_id = detail(reviewer, made.json()["id"])["documents"][0]["id"]  # type: ignore[index]
    other = operator(client, pg_db, role=role)
    submission = made.json()["id"]
    before = counts(pg_db, documents_dir)
    for caller in (other, user):
        for answer in (
            caller.get("/v1/admin/kyc/submissions", status="pending"),
            caller.get(f"/v1/admin/kyc/submissions/{submission}"),
            caller.get(f"/v1/admin/kyc/documents/{document_id}"),
            caller.post(f"/v1/admin/kyc/submissions/{submission}/approve", {}, key=None),
            caller.post(f"/v1/admin/kyc/submissions/{submission}/reject", {"reason": "no"}),
        ):
            assert answer.status_code == 403, answer.text
            assert answer.content[:1] == b"{"
    after = counts(pg_db, documents_dir)
    assert {k: v for k, v in after.items() if k != "audit"} == {
        k: v for k, v in before.items() if k != "audit"
    }
    assert user.get("/v1/kyc").json()["submissions"][0]["status"] == "pending"


def test_a_pdf_named_jpg_is_stored_as_a_pdf(client: TestClient, pg_db: Engine) -> None:
    user = signup(client, "Pdf")
    pdf = minimal_pdf()
    files = {
        "front": ("front.jpg", pdf, "image/jpeg"),
        "back": ("back.jpg", noise_image("JPEG"), "image/jpeg"),
    }
    made = submit(user, PRIMARY_FIELDS, files)
    assert made.status_code == 201, made.text
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    documents = {d["kind"]: d for d in detail(reviewer, made.json()["id"])["documents"]}  # type: ignore[attr-defined]
    assert documents["front"]["content_type"] == "application/pdf"
    served = reviewer.get(f"/v1/admin/kyc/documents/{documents['front']['id']}")
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["content-disposition"].startswith("attachment;")
    assert served.content == pdf


BAD_INPUTS = {
    "executable named .jpg": (
        {},
        {"front": ("front.jpg", EXECUTABLE, "image/jpeg")},
        415,
        "unsupported_document_type",
    ),
    "text named .png": (
        {},
        {"front": ("front.png", b"hello, I am not an image" * 10, "image/png")},
        415,
        "unsupported_document_type",
    ),
    "jpeg magic, no image": (
        {},
        {"front": ("front.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 300, "image/jpeg")},
        422,
        "invalid_document",
    ),
    "pdf header, no structure": (
        {},
        {"front": ("front.pdf", b"%PDF-1.7\n" + b"x" * 300, "application/pdf")},
        422,
        "invalid_document",
    ),
    "pdf with javascript": (
        {},
        {"front": ("f.pdf", minimal_pdf(b"/AA << /O << /S /JavaScript /JS (x) >> >> "), "a/b")},
        415,
        "unsupported_document_type",
    ),
    "oversize": (
        {},
        {"front": ("front.png", noise_image("PNG", size=200), "image/png")},
        413,
        "document_too_large",
    ),
    "empty file": ({}, {"front": ("front.png", b"", "image/png")}, 422, "document_required"),
    "missing file": ({}, {"front": None}, 422, "document_required"),
    "unknown level": ({"level": "platinum"}, {}, 422, "invalid_level"),
    "institutional over the API": ({"level": "institutional"}, {}, 422, "invalid_level"),
    "unknown document type": ({"document_type": "library_card"}, {}, 422, "invalid_document_type"),
    "no legal name": ({"legal_name": "  "}, {}, 422, "missing_field"),
    "bad country": ({"document_country": "Hong Kong"}, {}, 422, "invalid_field"),
    "date of birth in the future": ({"date_of_birth": "2999-01-01"}, {}, 422, "invalid_field"),
    "date of birth not a date": ({"date_of_birth": "01/04/1990"}, {}, 422, "invalid_field"),
    "selfie at primary": (
        {},
        {"selfie": ("s.jpg", noise_image("JPEG"), "image/jpeg")},
        422,
        "unexpected_document",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_nothing_is_stored(
    client: TestClient, pg_db: Engine, documents_dir: Path, case: str
) -> None:
    fields_change, files_change, status, code = BAD_INPUTS[case]
    user = signup(client, "Bad Input")
    files: dict[str, tuple[str, bytes, str]] = {
        "front": ("front.jpg", noise_image("JPEG"), "image/jpeg"),
        "back": ("back.jpg", noise_image("JPEG"), "image/jpeg"),
    }
    for name, value in files_change.items():
        if value is None:
            files.pop(name)
        else:
            files[name] = value
    before = counts(pg_db, documents_dir)
    refused = submit(user, {**PRIMARY_FIELDS, **fields_change}, files)
    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["code"] == code
    assert counts(pg_db, documents_dir) == before
    assert user.get("/v1/kyc").json()["submissions"] == []


def test_a_second_pending_submission_of_a_level_is_refused(
    client: TestClient, pg_db: Engine, documents_dir: Path
) -> None:
    user = signup(client, "Twice")
    first = submit(user, PRIMARY_FIELDS)
    assert first.status_code == 201
    before = counts(pg_db, documents_dir)
    second = submit(user, PRIMARY_FIELDS)
    assert second.status_code == 409
    assert second.json()["error"] == {
        "code": "kyc_submission_pending",
        "message": second.json()["error"]["message"],
        "details": {"submission_id": first.json()["id"]},
    }
    assert counts(pg_db, documents_dir) == before


def test_reviewing_twice_is_refused_and_changes_nothing(
    client: TestClient, pg_db: Engine, documents_dir: Path
) -> None:
    user = signup(client, "Reviewed")
    made = submit(user, PRIMARY_FIELDS).json()["id"]
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    bad_reason = reviewer.post(f"/v1/admin/kyc/submissions/{made}/reject", {"reason": " "})
    assert bad_reason.status_code == 422
    assert bad_reason.json()["error"]["code"] == "invalid_reason"
    assert (
        reviewer.post(f"/v1/admin/kyc/submissions/{made}/reject", {"reason": "Blurred"}).json()[
            "status"
        ]
        == "rejected"
    )
    shown = detail(reviewer, made)
    before = counts(pg_db, documents_dir)
    for path, body in (("approve", {}), ("reject", {"reason": "Again"})):
        again = reviewer.post(f"/v1/admin/kyc/submissions/{made}/{path}", body)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "kyc_submission_not_pending"
        assert again.json()["error"]["details"] == {"status": "rejected"}
    after = counts(pg_db, documents_dir)
    assert after["audit"] == before["audit"] + 2  # the guard's request records only
    assert {k: v for k, v in after.items() if k != "audit"} == {
        k: v for k, v in before.items() if k != "audit"
    }
    unchanged = detail(reviewer, made)  # one read: two could straddle a second of its age
    assert unchanged == {**shown, "age_seconds": unchanged["age_seconds"]}
    assert user.get("/v1/me").json()["kyc_tier"] == "unverified"
    missing = reviewer.post("/v1/admin/kyc/submissions/999999/approve", {})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "kyc_submission_not_found"


def test_a_reviewer_does_not_review_their_own_submission(client: TestClient, pg_db: Engine) -> None:
    reviewer = operator(client, pg_db, role="kyc_reviewer")
    made = submit(reviewer, PRIMARY_FIELDS)
    assert made.status_code == 201, made.text
    own = reviewer.post(f"/v1/admin/kyc/submissions/{made.json()['id']}/approve", {})
    assert own.status_code == 403 and own.json()["error"]["code"] == "own_submission"


@pytest.fixture
def app(kyc_app: FastAPI) -> FastAPI:
    """The KYC app for ``live_url`` (tests/api/conftest.py serves ``app``)."""
    return kyc_app


def test_concurrent_submissions_of_a_level_make_one(
    client: TestClient, live_url: str, pg_db: Engine, documents_dir: Path
) -> None:
    user = signup(client, "Racer")
    fields = dict(PRIMARY_FIELDS)
    bodies = [
        {
            "front": ("f.jpg", noise_image("JPEG"), "image/jpeg"),
            "back": ("b.jpg", noise_image("JPEG"), "image/jpeg"),
        }
        for _ in range(8)
    ]

    def send(files: dict[str, tuple[str, bytes, str]]) -> int:
        with httpx.Client(base_url=live_url, timeout=60) as racer:
            answer = racer.post(
                "/v1/kyc/submissions", data=fields, files=files, headers=user.headers()
            )
            return answer.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(send, bodies))
    assert statuses == [201] + [409] * 7
    after = counts(pg_db, documents_dir)
    assert (after["submissions"], after["documents"], after["files"]) == (1, 2, 2)


def test_submit_and_review_on_sqlite(sqlite_db: Engine, tmp_path: Path) -> None:
    """The embedded default: the partial unique index and the review work on SQLite too."""
    app = create_app(kyc_settings(sqlite_db, tmp_path / "docs"), sqlite_db)
    with TestClient(app) as sqlite_client:
        user = signup(sqlite_client, "Embedded")
        made = submit(user, PRIMARY_FIELDS)
        assert made.status_code == 201, made.text
        assert submit(user, PRIMARY_FIELDS).status_code == 409
        reviewer = operator(sqlite_client, sqlite_db, role="admin")
        document = detail(reviewer, made.json()["id"])["documents"][0]["id"]  # type: ignore[index]
        assert reviewer.get(f"/v1/admin/kyc/documents/{document}").status_code == 200
        approved = reviewer.post(f"/v1/admin/kyc/submissions/{made.json()['id']}/approve", {})
        assert approved.json()["status"] == "approved"
        assert user.get("/v1/me").json()["kyc_tier"] == "primary"
    assert len(stored_files(tmp_path / "docs")) == 2
