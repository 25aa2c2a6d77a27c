"""What a built audit directory holds, besides the tree: ``root.json`` (published), the audit
secret (private, derives every user's salt) and the small helpers both builders share."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strongroom.errors import ValidationFailed
from strongroom.reserves.merkle import SECRET_BYTES
from strongroom_verify import por_v1
from strongroom_verify.por_v1 import Asset

ROOT_FILE = "root.json"
TREE_FILE = "tree.bin"
INDEX_FILE = "index.bin"
SECRET_FILE = "secret.key"  # noqa: S105  (a file name, not a secret)
AUDIT_FILES = (ROOT_FILE, TREE_FILE, INDEX_FILE, SECRET_FILE)
_AUDIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass(frozen=True, slots=True)
class Audit:
    """The published summary of one audit (``root.json``, POR_FORMATS §1)."""

    audit_id: str
    created_at: datetime
    assets: tuple[Asset, ...]
    root: bytes
    totals: tuple[int, ...]
    leaf_count: int

    @property
    def height(self) -> int:
        return self.leaf_count.bit_length() - 1

    def totals_text(self) -> dict[str, str]:
        return {
            asset.code: por_v1.format_amount(total, asset.scale)
            for asset, total in zip(self.assets, self.totals, strict=True)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": por_v1.FORMAT,
            "audit_id": self.audit_id,
            "created_at": iso_utc(self.created_at),
            "assets": [{"code": a.code, "scale": a.scale} for a in self.assets],
            "root": self.root.hex(),
            "totals": self.totals_text(),
            "leaf_count": self.leaf_count,
            "height": self.height,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audit:
        if data.get("format") != por_v1.FORMAT:
            raise ValidationFailed(
                "root.json is not a strongroom-por-v1 audit", code="invalid_audit"
            )
        assets = tuple(Asset(str(a["code"]), int(a["scale"])) for a in data["assets"])
        totals = tuple(por_v1.parse_amount(str(data["totals"][a.code]), a.scale) for a in assets)
        return cls(
            audit_id=str(data["audit_id"]),
            created_at=parse_utc(str(data["created_at"])),
            assets=assets,
            root=bytes.fromhex(str(data["root"])),
            totals=totals,
            leaf_count=int(data["leaf_count"]),
        )


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def check_audit_id(audit_id: str) -> str:
    if not _AUDIT_ID.fullmatch(audit_id):
        raise ValidationFailed(
            "audit id: 1 to 64 letters, digits and . _ : - (starting with a letter or digit)",
            code="invalid_audit_id",
        )
    return audit_id


def default_audit_id(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H%M%SZ")


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def parse_secret(text: str) -> bytes:
    """A secret file holds the 32-byte audit secret as 64 hex digits."""
    cleaned = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", cleaned):
        raise ValidationFailed(
            "the audit secret file must hold 64 hex digits (32 bytes)", code="invalid_secret"
        )
    return bytes.fromhex(cleaned)


def read_secret(path: Path) -> bytes:
    try:
        return parse_secret(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationFailed(
            f"cannot read the audit secret {path}: {error}", code="invalid_secret"
        ) from error


def read_root(directory: Path) -> Audit:
    try:
        data = json.loads((directory / ROOT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValidationFailed(
            f"{directory} holds no readable {ROOT_FILE}: {error}", code="invalid_audit"
        ) from error
    if not isinstance(data, dict):
        raise ValidationFailed(f"{ROOT_FILE} is not a JSON object", code="invalid_audit")
    return Audit.from_json(data)
