"""Payloads as JSON documents: what ``strongroom emv decode`` prints and ``strongroom emv
encode`` reads (``{"fields": [{"id", "name"?, "value" | "fields"}], "crc"}``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strongroom.emv.codec import CRC_ID, EmvError, Field, Payload
from strongroom.emv.names import name_of


def field_to_json(field: Field, parent: str | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {"id": field.id}
    name = name_of(field.id, parent)
    if name:
        shown["name"] = name
    if field.fields is not None:
        shown["fields"] = [field_to_json(child, field.id) for child in field.fields]
    else:
        shown["value"] = field.value
    return shown


def payload_to_json(payload: Payload) -> dict[str, Any]:
    """``{"fields": [{id, name?, value | fields}], "crc"}``: what ``strongroom emv decode``
    prints and ``fields_from_json`` reads back (names are for people; they are ignored)."""
    return {"fields": [field_to_json(field) for field in payload.fields], "crc": payload.crc}


def fields_from_json(document: Any) -> list[Field]:
    """The fields of ``{"fields": [...]}`` (or of the list itself); a CRC field is dropped
    (encode computes it). ``EmvError`` for anything else."""
    listed = document.get("fields") if isinstance(document, dict) else document
    if not isinstance(listed, list):
        raise EmvError('expected {"fields": [...]} or a list of fields', code="emv_json_invalid")
    return [_field_from_json(item, 0) for item in listed if _id_of(item) != CRC_ID]


def _id_of(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else None


def _field_from_json(item: Any, depth: int) -> Field:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise EmvError('each field is an object with an "id" string', code="emv_json_invalid")
    children: Sequence[Any] | None = item.get("fields")
    value = item.get("value")
    if children is not None and depth == 0 and isinstance(children, list):
        return Field(item["id"], fields=tuple(_field_from_json(c, 1) for c in children))
    if not isinstance(value, str):
        raise EmvError(
            f'field {item["id"]}: give "value" (a string) or "fields" (a list)',
            code="emv_json_invalid",
        )
    return Field(item["id"], value)
