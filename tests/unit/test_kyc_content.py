"""What an uploaded KYC file is, by content; the bytes kept; the sealed file and its store.
Pure: no database (the store writes to a temporary directory)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from PIL import Image

from strongroom import vault
from strongroom.kyc import content
from strongroom.kyc.errors import DocumentTooLarge, InvalidDocument, UnsupportedDocumentType
from strongroom.kyc.store import FilesystemStore, new_key
from tests.api.kyc_support import EXECUTABLE, EXIF_MARKER, minimal_pdf, noise_image

LIMIT = 1_000_000
PIXELS = 10_000_000


def clean(data: bytes) -> content.CleanDocument:
    return content.clean(data, field="front", max_bytes=LIMIT, pixels_max=PIXELS)


@pytest.mark.parametrize("format_name", ["JPEG", "PNG"])
def test_images_are_re_encoded_without_their_metadata(format_name: str) -> None:
    original = noise_image(format_name)
    assert EXIF_MARKER.encode() in original
    kept = clean(original)
    assert kept.content_type == f"image/{format_name.lower()}"
    assert EXIF_MARKER.encode() not in kept.data
    with Image.open(io.BytesIO(kept.data)) as image:
        assert image.format == format_name and image.size == (64, 64)
        assert dict(image.getexif()) == {}
        assert "icc_profile" not in image.info and "exif" not in image.info


def test_the_exif_orientation_is_applied_before_it_is_dropped() -> None:
    image = Image.new("RGB", (40, 20), "red")
    tags = Image.Exif()
    tags[0x0112] = 6  # rotate 90° clockwise to view
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=tags.tobytes())
    with Image.open(io.BytesIO(clean(out.getvalue()).data)) as upright:
        assert upright.size == (20, 40)


def test_palette_and_transparent_pngs_keep_their_pixels() -> None:
    image = Image.new("P", (8, 8))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=1)
    with Image.open(io.BytesIO(clean(out.getvalue()).data)) as kept:
        assert kept.mode == "RGBA" and kept.getpixel((0, 0)) == (255, 0, 0, 255)


def test_a_pdf_is_decided_by_content_and_kept_as_sent() -> None:
    pdf = minimal_pdf()
    assert clean(pdf) == content.CleanDocument("application/pdf", pdf)


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (EXECUTABLE, UnsupportedDocumentType),
        (b"GIF89a" + b"\x00" * 100, UnsupportedDocumentType),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", UnsupportedDocumentType),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, InvalidDocument),
        (noise_image("PNG")[:200], InvalidDocument),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, InvalidDocument),
        (b"%PDF-1.4\nno structure at all", InvalidDocument),
        (minimal_pdf()[:-20], InvalidDocument),
        (minimal_pdf().replace(b"startxref\n", b"startxref\n9"), InvalidDocument),
        (minimal_pdf(b"/OpenAction << /S /Launch /F (calc.exe) >> "), UnsupportedDocumentType),
        (minimal_pdf(b"/Names << /EmbeddedFiles 5 0 R >> "), UnsupportedDocumentType),
        (minimal_pdf(b"/AA << /O << /S /J#61vaScript >> >> "), UnsupportedDocumentType),
        (b"", InvalidDocument),
    ],
)
def test_what_is_refused(data: bytes, refusal: type[Exception]) -> None:
    with pytest.raises(refusal) as refused:
        clean(data)
    assert refused.value.details["field"] == "front"  # type: ignore[attr-defined]


def test_a_script_in_a_compressed_stream_is_found() -> None:
    hidden = zlib.compress(b"<< /S /JavaScript /JS (app.alert(1)) >>")
    stream = b"/Length %d >>\nstream\n" % len(hidden) + hidden + b"\nendstream"
    pdf = minimal_pdf(b"/Extra << " + stream + b" ")
    with pytest.raises(UnsupportedDocumentType):
        clean(pdf)
    plain = zlib.compress(b"BT /F1 12 Tf (hello) Tj ET")
    ok = minimal_pdf(b"/Extra << /Length %d >>\nstream\n" % len(plain) + plain + b"\nendstream ")
    assert clean(ok).content_type == "application/pdf"


def test_sizes_are_bounded_in_bytes_and_pixels() -> None:
    big = noise_image("PNG", size=100)
    with pytest.raises(DocumentTooLarge) as refused:
        content.clean(big, field="back", max_bytes=len(big) - 1, pixels_max=PIXELS)
    assert refused.value.details == {"field": "back", "max_bytes": len(big) - 1}
    with pytest.raises(DocumentTooLarge) as refused:
        content.clean(big, field="back", max_bytes=LIMIT, pixels_max=100 * 100 - 1)
    assert refused.value.details["pixels_max"] == 100 * 100 - 1


def test_sealed_bytes_open_only_unaltered_in_their_context(tmp_path: Path) -> None:
    keyring = vault.keyring(
        "a-vault-key-for-tests-0123456789", secret_key="s" * 20, production=True
    )
    plain = noise_image("PNG")
    key_id, sealed = keyring.seal_bytes(plain, context="kyc_documents:1")
    assert key_id == keyring.current_id and plain[16:48] not in sealed
    assert keyring.open_bytes(key_id, sealed, context="kyc_documents:1") == plain
    flipped = bytearray(sealed)
    flipped[-1] ^= 0x80
    for blob, context in (
        (bytes(flipped), "kyc_documents:1"),
        (sealed, "kyc_documents:2"),
        (sealed[:20], "kyc_documents:1"),
    ):
        with pytest.raises(vault.VaultError):
            keyring.open_bytes(key_id, blob, context=context)
    rotated = vault.keyring(
        "the-next-vault-key-0123456789abc",
        ["a-vault-key-for-tests-0123456789"],
        secret_key="s" * 20,
        production=True,
    )
    assert rotated.current_id != key_id
    assert rotated.open_bytes(key_id, sealed, context="kyc_documents:1") == plain

    store = FilesystemStore(tmp_path)
    key = new_key()
    store.put(key, sealed)
    assert store.get(key) == sealed
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [key]
    store.delete(key)
    store.delete(key)
    with pytest.raises(KeyError):
        store.get(key)
    with pytest.raises(KeyError):
        store.get("../../etc/passwd")
