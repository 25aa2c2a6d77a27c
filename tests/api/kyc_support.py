"""What the KYC tests share: documents made with Pillow, a submission over HTTP, row and file
counts."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from strongroom import db
from strongroom.identity.models import AuditEvent
from strongroom.kyc.models import Document, Submission
from strongroom.notify.models import OutboxEmail
from tests.api.conftest import Caller

EXIF_MARKER = "EXIF-MARKER-CAMERA-SERIAL-4711"
EXIF_DESCRIPTION = 0x010E
EXIF_MODEL = 0x0110


def noise_image(format_name: str, *, size: int = 64, exif: bool = True) -> bytes:
    """An image of random pixels (so its encoded bytes are distinctive), with EXIF that names
    a camera (``EXIF_MARKER``) when asked."""
    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if exif:
        tags = Image.Exif()
        tags[EXIF_DESCRIPTION] = EXIF_MARKER
        tags[EXIF_MODEL] = EXIF_MARKER
        options["exif"] = tags.tobytes()
    image.save(out, format=format_name, **options)
    return out.getvalue()


def minimal_pdf(extra: bytes = b"") -> bytes:
    """A small well-formed PDF (one empty page) with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] " + extra + b">>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200 + b"PE\x00\x00"

PRIMARY_FIELDS = {
    "level": "primary",
    "document_country": "HK",
    "document_type": "id_card",
    "legal_name": "Chan Tai Man",
    "document_number": "A123456(7)",
    "date_of_birth": "1990-04-01",
}


def submit(
    caller: Caller,
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes, str]] | None = None,
) -> httpx.Response:
    """``POST /v1/kyc/submissions`` as multipart (``files``: field → name, bytes, type)."""
    if files is None:
        files = {
            "front": ("front.jpg", noise_image("JPEG"), "image/jpeg"),
            "back": ("back.png", noise_image("PNG"), "image/png"),
        }
    return caller.client.post(
        "/v1/kyc/submissions", data=fields, files=files, headers=caller.headers()
    )


def counts(engine: Engine, documents_dir: Path) -> dict[str, int]:
    """Rows of the KYC tables, emails, audit events, and files in the document store."""
    with db.make_session_factory(engine)() as session:
        rows = {
            name: session.scalar(select(func.count()).select_from(model)) or 0
            for name, model in (
                ("submissions", Submission),
                ("documents", Document),
                ("emails", OutboxEmail),
                ("audit", AuditEvent),
            )
        }
    rows["files"] = sum(1 for path in documents_dir.rglob("*") if path.is_file())
    return rows


def stored_files(documents_dir: Path) -> list[Path]:
    return sorted(path for path in documents_dir.rglob("*") if path.is_file())
