"""EMVCo MPM round trips (R-CODE-2): decode(encode(x)) == x for generated fields, and
encode(decode(p)) == p for the payloads that makes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from strongroom import emv

TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40
)
PLAIN_IDS = st.sampled_from(
    [f"{n:02d}" for n in range(1, 100) if n != 63 and not emv.is_template(f"{n:02d}")]
)
TEMPLATE_IDS = st.sampled_from(sorted(emv.codec.TEMPLATE_IDS))
SUB_IDS = st.sampled_from([f"{n:02d}" for n in range(100)])


@st.composite
def templates(draw: st.DrawFn) -> emv.Field:
    children = draw(
        st.lists(st.builds(emv.Field, SUB_IDS, TEXT), min_size=1, max_size=4).filter(
            lambda items: sum(4 + len(child.value or "") for child in items) <= 99
        )
    )
    return emv.Field(draw(TEMPLATE_IDS), fields=tuple(children))


FIELDS = st.lists(st.one_of(st.builds(emv.Field, PLAIN_IDS, TEXT), templates()), max_size=12)


@given(FIELDS)
def test_decode_of_encode_is_identity(fields: list[emv.Field]) -> None:
    listed = [emv.Field("00", "01"), *fields]
    payload = emv.encode(listed)
    decoded = emv.decode(payload)
    assert decoded.fields == tuple(listed)
    assert emv.encode(decoded.fields) == payload
    assert decoded.crc == payload[-4:]


@given(FIELDS, st.integers(min_value=0, max_value=10_000), st.integers(0, 9))
def test_one_changed_character_is_refused(fields: list[emv.Field], where: int, digit: int) -> None:
    payload = emv.encode([emv.Field("00", "01"), *fields])
    index = 6 + where % (len(payload) - 6)  # not the format indicator: a CRC or TLV error
    changed = payload[:index] + str(digit) + payload[index + 1 :]
    if changed != payload:
        try:
            emv.decode(changed)
        except emv.EmvError:
            return
        raise AssertionError(f"{changed!r} decoded")
