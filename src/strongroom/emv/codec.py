"""TLV fields ``ID(2) LEN(2) VALUE`` with nested templates, and CRC-16/CCITT-FALSE (EMVCo MPM).

A payload is a sequence of top-level fields; field ``00`` (payload format indicator, ``01``)
comes first and field ``63`` (the CRC: 4 uppercase hex digits over the whole payload up to and
including ``6304``) last. The ids in ``TEMPLATE_IDS`` hold TLV fields of their own (merchant
account templates 26-51, additional data 62, the language template 64, unreserved templates
80-99); a template whose value is not well-formed TLV is kept as a plain value, and an id this
module does not know is kept as it is: a payload of another scheme never fails for what it
adds, only for a broken structure or CRC.

Lengths count characters (the value's ``len``); the CRC is computed over the payload's UTF-8
bytes (the ASCII of every field but the free text of template 64).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from strongroom.errors import DomainError

CRC_ID: Final = "63"
CRC_HEADER: Final = "6304"
FORMAT_ID: Final = "00"
FORMAT_VALUE: Final = "01"
VALUE_MAX_CHARS: Final = 99
PAYLOAD_MAX_CHARS: Final = 4096
"""Far above any real code (a QR code holds at most 4296 alphanumeric characters)."""
NESTING_MAX: Final = 2
"""Templates hold fields, not templates: nesting stops one level down."""
TEMPLATE_IDS: Final = frozenset(
    [f"{number:02d}" for number in range(26, 52)]
    + ["62", "64"]
    + [f"{number:02d}" for number in range(80, 100)]
)


class EmvError(DomainError):
    """A payload that is not a well-formed EMV MPM code (``code`` says what is wrong,
    ``details.position`` where, counted in characters from 0)."""

    code = "emv_invalid"
    status = 422


@dataclass(frozen=True, slots=True)
class Field:
    """One TLV field: ``value`` is the text of a plain field, ``fields`` the children of a
    template (exactly one of them is set)."""

    id: str
    value: str | None = None
    fields: tuple[Field, ...] | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.fields is None):
            raise EmvError(
                f"field {self.id!r} needs a value or sub-fields, not both",
                code="emv_field_invalid",
                id=self.id,
            )

    def get(self, field_id: str) -> Field | None:
        """The first sub-field ``field_id`` of a template (None if absent or not a template)."""
        return next((child for child in self.fields or () if child.id == field_id), None)


@dataclass(frozen=True, slots=True)
class Payload:
    """A decoded payload: its fields in order (without the CRC field) and the CRC it had."""

    fields: tuple[Field, ...]
    crc: str

    def get(self, field_id: str) -> Field | None:
        """The first top-level field ``field_id``."""
        return next((field for field in self.fields if field.id == field_id), None)

    def value(self, field_id: str) -> str | None:
        """The text of top-level plain field ``field_id``."""
        found = self.get(field_id)
        return found.value if found is not None else None


def is_template(field_id: str) -> bool:
    return field_id in TEMPLATE_IDS


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR
    (check value of ``b"123456789"``: 0x29B1)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def crc_text(body: str) -> str:
    """The CRC field's value for ``body`` (the payload up to and including ``6304``)."""
    return f"{crc16(body.encode()):04X}"


# ------------------------------------------------------------------------------------ decode


def _split(text: str, offset: int) -> list[tuple[str, str, int]]:
    """``text`` as TLV triples ``(id, value, position)``; ``EmvError`` on a broken structure
    (``offset``: where ``text`` starts in the payload, for the error's position)."""
    triples: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):  # bounded: each pass consumes at least 4 characters
        where = offset + position
        if len(text) - position < 4:
            raise EmvError(
                f"truncated TLV at character {where}: a field needs 2 id and 2 length digits",
                code="emv_truncated",
                position=where,
            )
        field_id, length_text = text[position : position + 2], text[position + 2 : position + 4]
        if not (field_id.isascii() and field_id.isdigit()):
            raise EmvError(
                f"field id {field_id!r} at character {where} is not two digits",
                code="emv_id_invalid",
                position=where,
            )
        if not (length_text.isascii() and length_text.isdigit()):
            raise EmvError(
                f"field {field_id} at character {where}: length {length_text!r} is not two digits",
                code="emv_length_invalid",
                position=where,
            )
        length = int(length_text)
        start = position + 4
        if start + length > len(text):
            raise EmvError(
                f"field {field_id} at character {where} claims {length} characters but only "
                f"{len(text) - start} are left",
                code="emv_length_overrun",
                position=where,
            )
        triples.append((field_id, text[start : start + length], offset + start))
        position = start + length
    return triples


def _fields(text: str, offset: int, depth: int) -> tuple[Field, ...]:
    parsed: list[Field] = []
    for field_id, value, position in _split(text, offset):
        children = _children(value, position, depth) if is_template(field_id) else None
        parsed.append(
            Field(field_id, fields=children) if children is not None else Field(field_id, value)
        )
    return tuple(parsed)


def _children(value: str, position: int, depth: int) -> tuple[Field, ...] | None:
    """A template's sub-fields, or None when its value is not TLV (kept as a plain value)."""
    if depth + 1 >= NESTING_MAX or not value:
        return None
    try:
        triples = _split(value, position)
    except EmvError:
        return None
    return tuple(Field(field_id, text) for field_id, text, _ in triples)


def decode(payload: str) -> Payload:
    """The fields of an EMV MPM payload; ``EmvError`` on a broken TLV structure (a truncated
    field, a length running past the end, non-numeric ids or lengths), a missing or misplaced
    CRC field, a CRC that does not match, or a first field other than ``000201``."""
    if len(payload) > PAYLOAD_MAX_CHARS:
        raise EmvError(
            f"payload longer than {PAYLOAD_MAX_CHARS} characters",
            code="emv_too_long",
            max_chars=PAYLOAD_MAX_CHARS,
        )
    if not payload:
        raise EmvError("empty payload", code="emv_truncated", position=0)
    fields = _fields(payload, 0, 0)
    last = fields[-1]
    if last.id != CRC_ID or len(payload) < 8 or payload[-8:-4] != CRC_HEADER:
        raise EmvError(
            "the last field must be the CRC (63, 4 characters)",
            code="emv_crc_missing",
            position=max(len(payload) - 8, 0),
        )
    if any(field.id == CRC_ID for field in fields[:-1]):
        raise EmvError("the CRC field appears before the end", code="emv_crc_misplaced")
    expected = crc_text(payload[:-4])
    if payload[-4:] != expected:
        raise EmvError(
            f"CRC {payload[-4:]!r} does not match the payload (expected {expected})",
            code="emv_crc_mismatch",
            found=payload[-4:],
            expected=expected,
        )
    body = fields[:-1]
    if not body or body[0].id != FORMAT_ID or body[0].value != FORMAT_VALUE:
        raise EmvError(
            "the first field must be the payload format indicator 000201",
            code="emv_format_invalid",
            position=0,
        )
    return Payload(fields=body, crc=expected)


# ------------------------------------------------------------------------------------ encode


def _tlv(field: Field, depth: int) -> str:
    if len(field.id) != 2 or not (field.id.isascii() and field.id.isdigit()):
        raise EmvError(f"field id {field.id!r} is not two digits", code="emv_id_invalid")
    if field.fields is not None:
        if depth + 1 >= NESTING_MAX:
            raise EmvError(
                f"field {field.id}: templates hold plain fields only", code="emv_field_invalid"
            )
        if not is_template(field.id):
            raise EmvError(
                f"field {field.id} is not a template: give it a value",
                code="emv_field_invalid",
                id=field.id,
            )
        value = "".join(_tlv(child, depth + 1) for child in field.fields)
    else:
        value = field.value or ""
    if len(value) > VALUE_MAX_CHARS:
        raise EmvError(
            f"field {field.id}: a value has at most {VALUE_MAX_CHARS} characters, not {len(value)}",
            code="emv_length_invalid",
            id=field.id,
        )
    return f"{field.id}{len(value):02d}{value}"


def encode(fields: Iterable[Field]) -> str:
    """The payload of ``fields`` (without a CRC field: it is computed and appended)."""
    listed = list(fields)
    if not listed or listed[0].id != FORMAT_ID or listed[0].value != FORMAT_VALUE:
        raise EmvError(
            "the first field must be the payload format indicator 000201",
            code="emv_format_invalid",
        )
    if any(field.id == CRC_ID for field in listed):
        raise EmvError("leave the CRC field out: encode computes it", code="emv_crc_misplaced")
    body = "".join(_tlv(field, 0) for field in listed) + CRC_HEADER
    payload = body + crc_text(body)
    if len(payload) > PAYLOAD_MAX_CHARS:
        raise EmvError(
            f"payload longer than {PAYLOAD_MAX_CHARS} characters",
            code="emv_too_long",
            max_chars=PAYLOAD_MAX_CHARS,
        )
    return payload
