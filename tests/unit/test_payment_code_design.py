"""The payment-code algorithm of docs/payment-codes.md (R-CODE-1): its test vectors, and the
chance that a random code is accepted, from the design's numbers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from strongroom.paycodes import domain
from strongroom.settings import PaymentCodeSettings

SECRET = b"12345678901234567890123456789012"
VECTORS = [
    (59, "888800010000042870385432"),
    (1111111109, "888800010000042007741896"),
    (1234567890, "888800010000042740522484"),
    (2000000000, "888800010000042279495488"),
    (20000000000, "888800010000042173827260"),
]


def test_the_documented_secret_encodes_as_shown() -> None:
    text = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"
    assert base64.b32encode(SECRET).decode().rstrip("=") == text
    assert domain.secret_bytes(text) == SECRET


@pytest.mark.parametrize(("unix_time", "code"), VECTORS)
def test_the_documented_vectors(unix_time: int, code: str) -> None:
    step = domain.step_of(datetime.fromtimestamp(unix_time, UTC), 30)
    assert domain.code(issuer_id="88880001", locator=42, secret=SECRET, step=step) == code
    assert domain.split(code) == ("88880001", 42, code[-9:])


def test_a_random_code_is_accepted_with_probability_below_1e_9() -> None:
    """Of the 10^16 consumer parts (the issuer id is public), each active device has one
    accepted code per accepted step at any instant, and no two devices share one (distinct
    locators)."""
    settings = PaymentCodeSettings()
    accepted_steps = settings.past_steps + 1 + settings.future_steps
    assert accepted_steps == 3
    assert settings.window_s == 60
    active_devices = 1_000_000
    consumer_parts = 10**16
    probability = active_devices * accepted_steps / consumer_parts
    assert probability == pytest.approx(3e-10)
    assert probability < 1e-9
    whole_code = probability / 10**8  # a random 24-digit number must hit the issuer id too
    assert whole_code < 1e-17
    assert domain.false_accept_probability(
        active_devices=active_devices, accepted=accepted_steps, issuer_known=True
    ) == pytest.approx(probability)
    # where the bound stops holding: the number the docs give
    assert 3_333_333 * accepted_steps / consumer_parts < 1e-9 < 3_333_334 * 3 / consumer_parts


def test_codes_are_24_digits_and_differ_by_step() -> None:
    secret = domain.secret_bytes(domain.new_secret())
    codes = {
        domain.code(issuer_id="12345678", locator=9_999_999, secret=secret, step=s)
        for s in range(50)
    }
    assert len(codes) == 50
    assert all(len(c) == 24 and c.isdigit() and c[8:15] == "9999999" for c in codes)
    assert domain.split("1" * 23) is None and domain.split("1" * 23 + "x") is None
