"""Institutional KYC on the web (R-KYC-4, issue #11 point 1): the Lite app's
``/app/kyc/institutional`` form posted as multipart (the organisation, its addresses, member
rows, the organisation's documents, the declaration), its refusals (each a clear 4xx with no
row and no file stored), the downloadable templates, and the console's review of an
institutional submission (organisation, addresses, members, documents through the audited
viewer; approval sets the tier ``institutional`` and emails the user; a rejection is emailed and
the organisation applies again). Over HTTP here; in Chromium in
``test_kyc_institutional_browser.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.app import create_app
from strongroom.identity.models import AuditEvent, User
from strongroom.kyc import institutional
from strongroom.kyc.models import Document, Member, Organisation, Submission
from strongroom.notify.models import OutboxEmail
from strongroom.settings import KycSettings
from tests.api.conftest import make_settings
from tests.api.kyc_support import EXECUTABLE, minimal_pdf, noise_image, stored_files

from .conftest import (
    assert_locked_down,
    csrf_token,
    fingerprint,
    new_client,
    web_sign_in,
    web_user,
)
from .console_support import console_sign_in, make_operator

PATH = "/app/kyc/institutional"
DOCUMENT_MAX_BYTES = 256 * 1024

ORGANISATION = {
    "name": "Harbour Trading Limited",
    "registration_number": "CR-1234567",
    "incorporation_country": "HK",
    "incorporated_on": "2015-03-02",
    "organisation_type": "company",
    "registered_address": "Flat A, 12/F, Harbour Tower\n1 Harbour Road, Wan Chai",
    "registered_country": "HK",
    "business_address": "Unit 3, 8/F, Kowloon Bay Centre\n9 Sheung Yuet Road",
    "business_country": "HK",
}
MEMBERS = [
    {
        "role": "authorised_representative",
        "legal_name": "Chan Tai Man",
        "date_of_birth": "1980-04-01",
        "nationality": "HK",
        "document_number": "A123456(7)",
        "ownership": "",
    },
    {
        "role": "beneficial_owner",
        "legal_name": "Lee Siu Ming",
        "date_of_birth": "1975-09-12",
        "nationality": "GB",
        "document_number": "P9876543",
        "ownership": "60",
    },
    {
        "role": "significant_control",
        "legal_name": "Wong Mei Ling",
        "date_of_birth": "1969-01-30",
        "nationality": "SG",
        "document_number": "S1234567D",
        "ownership": "",
    },
]

FileParts = list[tuple[str, tuple[str, bytes, str]]]


@pytest.fixture
def documents_dir(tmp_path: Path) -> Path:
    return tmp_path / "kyc-documents"


@pytest.fixture
def app(pg_db: Engine, documents_dir: Path) -> FastAPI:
    settings = make_settings(pg_db)
    kyc = KycSettings(documents_dir=str(documents_dir), document_max_bytes=DOCUMENT_MAX_BYTES)
    return create_app(settings.model_copy(update={"kyc": kyc}), pg_db)


@pytest.fixture
def http(live_url: str, pg_db: Engine) -> Iterator[httpx.Client]:
    with new_client(live_url) as client:
        web_sign_in(client, web_user(pg_db, "Organisation"))
        yield client


def form(members: list[dict[str, str]] | None = None, **changes: str | None) -> dict[str, str]:
    """The text fields: the organisation, the members as rows 1..n, the declaration ticked
    (``declaration=None`` leaves it out)."""
    fields: dict[str, str] = {**ORGANISATION, "declaration": "yes"}
    for index, member in enumerate(MEMBERS if members is None else members, start=1):
        fields |= {f"members-{index}-{name}": value for name, value in member.items()}
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def files(
    members: int = len(MEMBERS), *, skip: tuple[str, ...] = (), **replace: bytes
) -> FileParts:
    """The organisation's documents and one identity document per member row."""
    parts: FileParts = [
        ("board_resolution", ("resolution.pdf", minimal_pdf(), "application/pdf")),
        ("ownership_structure", ("structure.png", noise_image("PNG"), "image/png")),
    ]
    parts += [
        (f"members-{index}-document", (f"id-{index}.jpg", noise_image("JPEG"), "image/jpeg"))
        for index in range(1, members + 1)
    ]
    return [
        (name, (part[0], replace[name.replace("-", "_")], part[2]))
        if name.replace("-", "_") in replace
        else (name, part)
        for name, part in parts
        if name not in skip
    ]


def post(client: httpx.Client, fields: dict[str, str], parts: FileParts) -> httpx.Response:
    token = csrf_token(client.get(PATH).text)
    return client.post(PATH, data={"csrf_token": token, **fields}, files=parts)


def _user(engine: Engine, email: str) -> User:
    with db.make_session_factory(engine)() as session:
        return session.scalars(select(User).where(User.email == email)).one()


def test_the_form_and_its_templates(http: httpx.Client, live_url: str) -> None:
    with new_client(live_url) as stranger:
        assert stranger.get(PATH).status_code == 303  # to the sign-in page
    page = http.get(PATH)
    assert page.status_code == 200
    assert_locked_down(http, page)
    html = page.text
    assert 'enctype="multipart/form-data"' in html and "data-upload-progress" in html
    for name in ("name", "registration_number", "incorporated_on", "registered_address"):
        assert f'name="{name}"' in html
    assert 'name="members-1-role"' in html and 'name="members-2-document"' in html
    assert 'name="members-3-role"' not in html, "two rows to start with"
    assert (
        'type="checkbox" value="yes" required' in html and "<template data-member-template>" in html
    )
    assert 'name="members-4-role"' in http.get(f"{PATH}?members=4").text, "adding without JS"
    assert http.get(f"{PATH}?members=0").status_code == 422

    templates = re.findall(r'href="(/static/web/kyc/[^"]+)" download', html)
    assert len(templates) == 4
    bodies = {}
    for url in templates:
        got = http.get(url)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
        bodies[url.split("?")[0].rsplit("/", 1)[1]] = got.content.decode("utf-8")
    assert bodies["board-resolution-template.en.txt"].startswith("BOARD RESOLUTION")
    assert bodies["board-resolution-template.zh_Hant.txt"].startswith("董事會決議")
    assert "beneficial owners" in bodies["ownership-structure-template.en.txt"]
    assert "最終實益擁有人" in bodies["ownership-structure-template.zh_Hant.txt"]

    listed = http.get("/app/kyc").text
    assert 'href="/app/kyc/institutional"' in listed


def test_an_institutional_application_is_stored_and_waits_for_review(
    http: httpx.Client, pg_db: Engine, documents_dir: Path
) -> None:
    fields = form() | {"members-3-ownership": "15.5"}
    # a row left empty (as the browser sends a row added and not filled in) is dropped
    fields |= {"members-7-role": "beneficial_owner", "members-7-legal_name": " "}
    done = post(http, fields, files())
    assert done.status_code == 303 and done.headers["location"] == "/app/kyc"
    with db.make_session_factory(pg_db)() as session:
        submission = session.scalars(select(Submission)).one()
        assert (submission.level, submission.status) == ("institutional", "pending")
        assert submission.legal_name is None and submission.document_number is None
        organisation = session.get_one(Organisation, submission.id)
        assert organisation.name == "Harbour Trading Limited"
        assert organisation.registered_address == (
            "Flat A, 12/F, Harbour Tower\n1 Harbour Road, Wan Chai"
        )
        assert organisation.incorporated_on.isoformat() == "2015-03-02"
        members = session.scalars(select(Member).order_by(Member.position)).all()
        assert [(m.position, m.role, m.ownership_bps) for m in members] == [
            (1, "authorised_representative", None),
            (2, "beneficial_owner", 6000),
            (3, "significant_control", 1550),
        ]
        kinds = sorted(session.scalars(select(Document.kind)))
    assert kinds == ["board_resolution", "member_1", "member_2", "member_3", "ownership_structure"]
    assert len(stored_files(documents_dir)) == 5
    for path in stored_files(documents_dir):
        assert b"%PDF" not in path.read_bytes() and b"JFIF" not in path.read_bytes()

    shown = http.get("/app/kyc").text
    assert 'data-status="pending"' in shown and "Institutional" in shown
    assert 'href="/app/kyc/institutional"' not in shown, "one pending application at a time"
    before = fingerprint(pg_db)
    again = post(http, form(), files())
    assert again.status_code == 409
    assert "waiting for review" in again.text
    assert fingerprint(pg_db) == before

    no_token = http.post(PATH, data=form(), files=files())
    assert no_token.status_code == 403


UBO = {
    "role": "beneficial_owner",
    "legal_name": "Ho Ka Yan",
    "date_of_birth": "1990-06-06",
    "nationality": "HK",
    "document_number": "Z7654321",
    "ownership": "50",
}
REFUSED: list[tuple[str, dict[str, Any], dict[str, Any], int, str]] = [
    (
        "no authorised representative",
        {"members": [MEMBERS[1], MEMBERS[2]]},
        {"members": 2},
        422,
        "Name the organisation's authorised representative.",
    ),
    (
        "two authorised representatives",
        {"members": [MEMBERS[0], MEMBERS[0] | {"legal_name": "Second Rep"}]},
        {"members": 2},
        422,
        "Exactly one member is the authorised representative.",
    ),
    (
        "a member without a document",
        {},
        {"skip": ("members-2-document",)},
        422,
        "Add the missing file. (Member 2: Identity document)",
    ),
    (
        "no board resolution",
        {},
        {"skip": ("board_resolution",)},
        422,
        "Add the missing file. (Board resolution)",
    ),
    (
        "a beneficial owner's ownership above 100",
        {"members-2-ownership": "100.5"},
        {},
        422,
        "Ownership is a percentage from 0 to 100",
    ),
    (
        "a beneficial owner with 0 %",
        {"members-2-ownership": "0"},
        {},
        422,
        "(Member 2: Ownership (per cent))",
    ),
    (
        "a beneficial owner without ownership",
        {"members-2-ownership": ""},
        {},
        422,
        "Fill in every field. (Member 2: Ownership (per cent))",
    ),
    (
        "ownership that is not a number",
        {"members-3-ownership": "a lot"},
        {},
        422,
        "(Member 3: Ownership (per cent))",
    ),
    (
        "beneficial owners over 100 % together",
        {"members": [*MEMBERS, UBO]},
        {"members": 4},
        422,
        "The beneficial owners together hold more than 100 per cent.",
    ),
    (
        "the declaration unticked",
        {"declaration": None},
        {},
        422,
        "Tick the declaration to submit.",
    ),
    (
        "a member's document that is an executable",
        {},
        {"members_1_document": EXECUTABLE},
        415,
        "Send a photo (JPEG or PNG) or a PDF.",
    ),
    (
        "an ownership structure that is a PDF named .png and broken",
        {},
        {"ownership_structure": b"%PDF-1.4\nnot really a pdf"},
        422,
        "A file could not be read",
    ),
    (
        "an oversize file",
        {},
        {"board_resolution": minimal_pdf() + b"%" * DOCUMENT_MAX_BYTES},
        413,
        "A file is too large",
    ),
    (
        "a missing organisation name",
        {"name": "  "},
        {},
        422,
        "Fill in every field. (Name of the organisation)",
    ),
    (
        "a wrong organisation type",
        {"organisation_type": "cartel"},
        {},
        422,
        "Choose the type of organisation from the list.",
    ),
    (
        "a wrong member role",
        {"members-3-role": "friend"},
        {},
        422,
        "Choose each member's role from the list.",
    ),
    (
        "a member's nationality that is not a code",
        {"members-1-nationality": "Hong Kong"},
        {},
        422,
        "(Member 1: Nationality)",
    ),
    (
        "an incorporation in the future",
        {"incorporated_on": "2999-01-01"},
        {},
        422,
        "(Date of incorporation)",
    ),
    (
        "no members at all",
        {"members": []},
        {"members": 0},
        422,
        "Name the organisation's members",
    ),
]


@pytest.mark.parametrize(
    ("case", "changes", "file_changes", "status", "message"),
    REFUSED,
    ids=[case[0] for case in REFUSED],
)
def test_refusals_store_nothing(
    case: str,
    changes: dict[str, Any],
    file_changes: dict[str, Any],
    status: int,
    message: str,
    http: httpx.Client,
    pg_db: Engine,
    documents_dir: Path,
) -> None:
    members = changes.pop("members", None)
    fields = form(members, **changes)
    before, files_before = fingerprint(pg_db), stored_files(documents_dir)
    refused = post(http, fields, files(**file_changes))
    assert refused.status_code == status, refused.text[:400]
    assert message in refused.text.replace("&#39;", "'")
    assert 'value="Harbour Trading Limited"' in refused.text or changes.get("name"), (
        "what was typed is kept"
    )
    assert fingerprint(pg_db) == before, case
    assert stored_files(documents_dir) == files_before, case


def test_too_many_members_and_a_malformed_body(http: httpx.Client, pg_db: Engine) -> None:
    before = fingerprint(pg_db)
    crowd = [MEMBERS[0]] + [UBO | {"ownership": "1"}] * 12
    refused = post(http, form(crowd), files(1))
    assert refused.status_code == 422 and "At most 12 members" in refused.text
    token = csrf_token(http.get(PATH).text)
    garbled = http.post(
        PATH,
        content=b"--x\r\nnot a part",
        headers={"content-type": "multipart/form-data; boundary=x", "x-csrf-token": token},
    )
    assert garbled.status_code in (400, 403)
    assert fingerprint(pg_db) == before


def test_a_body_over_the_form_limit_is_refused_unread(
    http: httpx.Client, pg_db: Engine, documents_dir: Path
) -> None:
    """The form's own body limit: every file it may hold at their largest, and the overhead."""
    limit = institutional.FILES_MAX * DOCUMENT_MAX_BYTES + KycSettings().form_overhead_bytes
    before = fingerprint(pg_db)
    big = [
        (f"members-{index}-document", (f"{index}.jpg", b"\xff" * DOCUMENT_MAX_BYTES, "image/jpeg"))
        for index in range(1, 16)
    ]
    refused = post(http, form(), big)
    assert refused.status_code == 413
    assert refused.json()["error"]["details"]["max_bytes"] == limit
    assert fingerprint(pg_db) == before and stored_files(documents_dir) == []


def test_console_review_of_an_institutional_submission(
    http: httpx.Client, live_url: str, pg_db: Engine
) -> None:
    assert post(http, form(), files()).status_code == 303
    reviewer = make_operator(pg_db, "kyc_reviewer")
    with new_client(live_url) as console:
        console_sign_in(console, reviewer)
        queue = console.get("/console/kyc").text
        found = re.search(r'href="/console/kyc/(\d+)"', queue)
        assert found is not None and "Institutional" in queue
        assert "<span data-organisation>Harbour Trading Limited</span>" in queue
        submission = found.group(1)
        one = console.get(f"/console/kyc/{submission}")
        assert one.status_code == 200
        assert_locked_down(console, one)
        text = one.text
        assert "Harbour Trading Limited" in text and "CR-1234567" in text
        assert "1 Harbour Road, Wan Chai" in text and "9 Sheung Yuet Road" in text
        assert text.count('<tr data-member="') == 3
        assert 'data-role="beneficial_owner"' in text and "60 %" in text
        assert "Identity document of Lee Siu Ming" in text
        assert "Board resolution" in text and "Ownership structure" in text
        images = re.findall(r'<img src="(/console/kyc/documents/\d+)"', text)
        assert len(images) == 4  # the structure and three IDs; the resolution is a PDF
        pdf = re.search(r'href="(/console/kyc/documents/\d+)" download', text)
        assert pdf is not None
        got = console.get(pdf.group(1))
        assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
        token = csrf_token(text)
        rejected = console.post(
            f"/console/kyc/{submission}/reject",
            data={"csrf_token": token, "reason": "The board resolution is not signed."},
        )
        assert rejected.status_code == 303

        user_email = re.search(r"<code>([^<]+@[^<]+)</code>", text)
        assert user_email is not None
        user = _user(pg_db, user_email.group(1))
        shown = http.get("/app/kyc").text
        assert "The board resolution is not signed." in shown
        assert 'href="/app/kyc/institutional">' in shown, "submit again"
        assert post(http, form(), files()).status_code == 303

        second = re.search(r'href="/console/kyc/(\d+)"', console.get("/console/kyc").text)
        assert second is not None and second.group(1) != submission
        page = console.get(f"/console/kyc/{second.group(1)}").text
        approved = console.post(
            f"/console/kyc/{second.group(1)}/approve", data={"csrf_token": csrf_token(page)}
        )
        assert approved.status_code == 303
    assert _user(pg_db, user.email).kyc_tier == "institutional"
    assert 'data-tier="institutional"' in http.get("/app/kyc").text
    with db.make_session_factory(pg_db)() as session:
        emails = session.scalars(
            select(OutboxEmail).where(OutboxEmail.user_id == user.id).order_by(OutboxEmail.id)
        ).all()
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject_user_id == user.id)
        ).all()
    templates = [email.template_id for email in emails]
    assert "kyc.rejected" in templates and templates[-1] == "kyc.approved"
    assert "institutional" in emails[-1].body_text.lower()
    assert "kyc.document_viewed" in actions and "kyc.approved" in actions

    support = make_operator(pg_db, "support")
    with new_client(live_url) as other:
        console_sign_in(other, support)
        assert other.get(f"/console/kyc/{submission}").status_code == 403
        assert other.get(images[0]).status_code == 403
