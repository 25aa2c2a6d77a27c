"""Phone numbers (R-P2P-1): a user's number is stored in E.164 (``+85251234567``), parsed with
Google's libphonenumber (the ``phonenumbers`` package) from any common format: with or without
the country code, spaces, dashes, brackets. A number without a country code is read in the
user's region (HK → Hong Kong, CN → mainland China). Verification by SMS is not part of this:
the number is what the user says it is (the send-review step names the recipient masked, so a
sender can see whom a number reaches)."""

from __future__ import annotations

from typing import Final

import phonenumbers

from strongroom.errors import ValidationFailed

RAW_MAX_CHARS: Final = 40
# the user's region → libphonenumber's region for numbers written without a country code
DEFAULT_REGIONS: Final = {"HK": "HK", "CN": "CN"}


class InvalidPhone(ValidationFailed):
    code = "invalid_phone"


def parse(raw: str, *, region: str | None) -> str | None:
    """The E.164 form of ``raw``, or None when it is not a valid number."""
    if not raw or len(raw) > RAW_MAX_CHARS:
        return None
    try:
        number = phonenumbers.parse(raw, DEFAULT_REGIONS.get(region or ""))
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise(raw: str, *, region: str | None) -> str:
    """``parse``, refusing what is not a valid number (422 ``invalid_phone``)."""
    e164 = parse(raw.strip(), region=region)
    if e164 is None:
        raise InvalidPhone(
            "not a valid phone number: give it with its country code (+852 5123 4567) or as "
            "written in your region"
        )
    return e164


def looks_like_phone(reference: str) -> bool:
    """Whether a recipient reference is meant as a phone number (digits and the usual
    separators, at least one digit), not an email or a user id."""
    stripped = reference.strip()
    return (
        bool(stripped)
        and any(c.isdigit() for c in stripped)
        and all(c.isdigit() or c in "+-() ." for c in stripped)
    )
