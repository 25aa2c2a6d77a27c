"""KYC refusals with their own HTTP status (the mapping stays in app.py, by ``status``)."""

from __future__ import annotations

from strongroom.errors import DomainError


class DocumentTooLarge(DomainError):
    """An uploaded file over ``kyc.document_max_bytes`` (or an image over its pixel bound)."""

    code = "document_too_large"
    status = 413


class UnsupportedDocumentType(DomainError):
    """A file whose content is not a JPEG, a PNG or a PDF, whatever its name or declared type."""

    code = "unsupported_document_type"
    status = 415


class InvalidDocument(DomainError):
    """A file that starts like a JPEG, PNG or PDF but does not decode as one."""

    code = "invalid_document"
    status = 422


class DocumentUnreadable(DomainError):
    """A stored document that does not open: altered, moved or missing. Never served."""

    code = "document_unreadable"
    status = 500
