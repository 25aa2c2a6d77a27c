"""What an uploaded file is, decided by its content (magic bytes and a real decode), never by
its name or its declared content type; and the clean bytes to keep.

Images (JPEG, PNG) are decoded in full with Pillow, turned upright by their EXIF orientation,
and re-encoded from the pixels alone: EXIF (GPS, camera, times), XMP, ICC profiles, comments
and text chunks are gone. A PDF is checked for its structure (header, cross-reference section
or stream that ``startxref`` points at, a trailer or a catalog, ``%%EOF`` at the end) and
refused when it carries active content (JavaScript, launch actions, embedded files); it is
kept as sent (a PDF cannot be re-encoded without a renderer). Pure: no database, no files.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from strongroom.kyc.errors import DocumentTooLarge, InvalidDocument, UnsupportedDocumentType
from strongroom.kyc.models import JPEG, PDF, PNG

JPEG_MAGIC: Final = b"\xff\xd8\xff"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC: Final = re.compile(rb"%PDF-[12]\.[0-9]")
PDF_HEADER_WINDOW_BYTES: Final = 1024
PDF_TAIL_WINDOW_BYTES: Final = 2048
JPEG_QUALITY: Final = 90
ACTIVE_PDF_CONTENT: Final = re.compile(
    rb"/(JavaScript|JS(?![A-Za-z])|Launch|EmbeddedFile|RichMedia|XFA)"
)
EXTENSIONS: Final = {JPEG: "jpg", PNG: "png", PDF: "pdf"}


@dataclass(frozen=True, slots=True)
class CleanDocument:
    content_type: str
    data: bytes


def sniff(data: bytes) -> str:
    """The content type the bytes say they are (``unsupported_document_type`` otherwise)."""
    if data.startswith(JPEG_MAGIC):
        return JPEG
    if data.startswith(PNG_MAGIC):
        return PNG
    if PDF_MAGIC.search(data[:PDF_HEADER_WINDOW_BYTES]) is not None:
        return PDF
    raise UnsupportedDocumentType(
        "a document must be a JPEG, a PNG or a PDF (decided by its content, not its name)",
        accepted=[JPEG, PNG, PDF],
    )


def clean(data: bytes, *, field: str, max_bytes: int, pixels_max: int) -> CleanDocument:
    """The document to keep: its type by content and its bytes without metadata. Refused:
    ``document_too_large``, ``unsupported_document_type``, ``invalid_document``."""
    if len(data) > max_bytes:
        raise DocumentTooLarge(
            f"{field}: a document is at most {max_bytes} bytes", field=field, max_bytes=max_bytes
        )
    if not data:
        raise InvalidDocument(f"{field}: the file is empty", field=field)
    try:
        content_type = sniff(data)
    except UnsupportedDocumentType as refused:
        refused.details["field"] = field
        raise
    if content_type == PDF:
        _check_pdf(data, field)
        return CleanDocument(PDF, data)
    return CleanDocument(content_type, _reencoded(data, content_type, field, pixels_max))


def _reencoded(data: bytes, content_type: str, field: str, pixels_max: int) -> bytes:
    expected = "JPEG" if content_type == JPEG else "PNG"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[expected]) as image:
                width, height = image.size
                if width * height > pixels_max:
                    raise DocumentTooLarge(
                        f"{field}: an image is at most {pixels_max} pixels",
                        field=field,
                        pixels_max=pixels_max,
                    )
                image.load()
                upright = ImageOps.exif_transpose(image)
                return _pixels_only(upright, expected)
    except DocumentTooLarge:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
    ) as error:
        raise InvalidDocument(
            f"{field}: the file starts like a {expected} image but does not decode as one",
            field=field,
        ) from error


def _pixels_only(image: Image.Image, format_name: str) -> bytes:
    """The pixels in a new image with no metadata at all, encoded as ``format_name``."""
    if format_name == "JPEG":
        mode = "L" if image.mode in ("1", "L", "I;16", "I") else "RGB"
    else:
        mode = "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
        mode = "L" if image.mode in ("1", "L") else mode
    converted = image.convert(mode)
    bare = Image.frombytes(mode, converted.size, converted.tobytes())
    out = io.BytesIO()
    if format_name == "JPEG":
        bare.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        bare.save(out, format="PNG", optimize=True)
    return out.getvalue()


NAME_ESCAPE: Final = re.compile(rb"#([0-9A-Fa-f]{2})")


def _names_unescaped(data: bytes) -> bytes:
    """``/J#61vaScript`` is ``/JavaScript``: PDF names may escape any byte as ``#xx``."""
    return NAME_ESCAPE.sub(lambda found: bytes([int(found.group(1), 16)]), data)


STREAM: Final = re.compile(rb"stream\r?\n")
INFLATED_MAX_BYTES: Final = 64 * 1024 * 1024
"""How much of a PDF's compressed streams is inflated to look for active content (a bomb
inflates no further; what it hides past the bound is not looked at, so it is refused)."""


def _pdf_texts(data: bytes) -> Iterator[bytes]:
    """The file, then each Flate stream inflated (object streams may hide the markers)."""
    yield data
    budget = INFLATED_MAX_BYTES
    view = memoryview(data)  # no copy of the rest of the file per stream
    for found in STREAM.finditer(data):
        inflater = zlib.decompressobj()
        try:
            inflated = inflater.decompress(view[found.end() :], budget)
        except zlib.error:
            continue  # not a Flate stream (an image, another filter): nothing to look at
        budget -= len(inflated)
        yield inflated
        if budget <= 0 or inflater.unconsumed_tail:
            yield b"/JavaScript"  # too much to look at: refused as if it held a script
            return


STARTXREF: Final = re.compile(rb"startxref\s+(\d{1,12})\s+%%EOF\s*$")
XREF_STREAM_AT: Final = re.compile(rb"\d{1,10}\s+\d{1,5}\s+obj\b")


def _check_pdf(data: bytes, field: str) -> None:
    tail = data[-PDF_TAIL_WINDOW_BYTES:]
    found = STARTXREF.search(tail)

    def broken(why: str) -> InvalidDocument:
        return InvalidDocument(
            f"{field}: the file starts like a PDF but is not one ({why})", field=field, why=why
        )

    if found is None:
        raise broken("no startxref and %%EOF at its end")
    offset = int(found.group(1))
    if offset >= len(data):
        raise broken("startxref points outside the file")
    at = data[offset : offset + 64]
    if not (at.startswith(b"xref") or XREF_STREAM_AT.match(at)):
        raise broken("startxref does not point at a cross-reference section")
    if b"/Root" not in data or b"endobj" not in data:
        raise broken("no document catalog")
    if any(ACTIVE_PDF_CONTENT.search(_names_unescaped(part)) for part in _pdf_texts(data)):
        raise UnsupportedDocumentType(
            f"{field}: a PDF with active content (scripts, actions, attachments) is refused",
            field=field,
            accepted=[JPEG, PNG, PDF],
        )
