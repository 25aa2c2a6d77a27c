"""Opaque page cursors over ascending integer ids (newest-first pages walk downwards).

A base module beside ``money`` and ``errors``: any domain's keyset pages use it (the audit log,
the email outbox), so it belongs to none of them."""

from __future__ import annotations

import base64
import binascii

from strongroom.errors import ValidationFailed


def encode(prefix: str, last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{prefix}:{last_id}".encode()).decode().rstrip("=")


def decode(prefix: str, cursor: str) -> int:
    """The id a cursor carries; ``invalid_cursor`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor") from error
    found, _, value = raw.partition(":")
    if found != prefix or not value.isdigit() or len(value) > 19:
        raise ValidationFailed("cursor is not valid", code="invalid_cursor")
    return int(value)
