"""A merchant-presented code's meaning (R-CODE-2): ``read`` a decoded payload into what a
payer needs (static or dynamic, amount, currency, merchant), and ``build`` one from those,
checking the limits of the EMVCo fields that SPEC §8 names (name ≤ 25, city ≤ 15 characters,
currency ISO 4217 numeric, amount a decimal of at most 13 characters)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from strongroom.emv.codec import EmvError, Field, Payload, encode

STATIC: Final = "11"
DYNAMIC: Final = "12"
NAME_MAX_CHARS: Final = 25
CITY_MAX_CHARS: Final = 15
AMOUNT_MAX_CHARS: Final = 13
AMOUNT_PATTERN: Final = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$")
CURRENCY_PATTERN: Final = re.compile(r"^[0-9]{3}$")
MCC_PATTERN: Final = re.compile(r"^[0-9]{4}$")
COUNTRY_PATTERN: Final = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True)
class MerchantCode:
    """What a payer's app reads from a merchant-presented code."""

    dynamic: bool
    accounts: tuple[Field, ...]
    """The merchant account templates (ids 26-51), each with its sub-field 00 identifier."""
    mcc: str | None
    currency: str | None
    amount: str | None
    """The amount as written (a decimal string in the currency's major unit), or None."""
    country: str | None
    name: str | None
    city: str | None
    reference: str | None


def read(payload: Payload) -> MerchantCode:
    additional = payload.get("62")
    reference = additional.get("05") if additional is not None else None
    return MerchantCode(
        dynamic=payload.value("01") == DYNAMIC,
        accounts=tuple(f for f in payload.fields if "26" <= f.id <= "51" and f.fields),
        mcc=payload.value("52"),
        currency=payload.value("53"),
        amount=payload.value("54"),
        country=payload.value("58"),
        name=payload.value("59"),
        city=payload.value("60"),
        reference=reference.value if reference is not None else None,
    )


def _check(value: str | None, pattern: re.Pattern[str], what: str, code: str) -> None:
    if value is not None and not pattern.match(value):
        raise EmvError(f"{what}: {value!r} is not valid", code=code)


def build(
    *,
    account_identifier: str,
    account_fields: tuple[Field, ...] = (),
    mcc: str,
    currency: str,
    country: str,
    name: str,
    city: str,
    amount: str | None = None,
    reference: str | None = None,
    account_template_id: str = "26",
) -> str:
    """A merchant-presented payload: dynamic (``12``) when it carries an amount, else static
    (``11``); ``account_identifier`` is sub-field 00 of the merchant account template (e.g. a
    reverse domain name, ``hk.com.hkicl`` for FPS)."""
    _check(mcc, MCC_PATTERN, "merchant category code", "emv_mcc_invalid")
    _check(currency, CURRENCY_PATTERN, "currency (ISO 4217 numeric)", "emv_currency_invalid")
    _check(country, COUNTRY_PATTERN, "country (ISO 3166 alpha-2)", "emv_country_invalid")
    _check(amount, AMOUNT_PATTERN, "amount", "emv_amount_invalid")
    if amount is not None and len(amount) > AMOUNT_MAX_CHARS:
        raise EmvError(f"amount: at most {AMOUNT_MAX_CHARS} characters", code="emv_amount_invalid")
    if not 0 < len(name) <= NAME_MAX_CHARS or not 0 < len(city) <= CITY_MAX_CHARS:
        raise EmvError(
            f"merchant name 1-{NAME_MAX_CHARS}, city 1-{CITY_MAX_CHARS} characters",
            code="emv_name_invalid",
        )
    if not "26" <= account_template_id <= "51" or len(account_template_id) != 2:
        raise EmvError("a merchant account template id is 26 to 51", code="emv_field_invalid")
    fields = [
        Field("00", "01"),
        Field("01", DYNAMIC if amount is not None else STATIC),
        Field(account_template_id, fields=(Field("00", account_identifier), *account_fields)),
        Field("52", mcc),
        Field("53", currency),
        *([Field("54", amount)] if amount is not None else []),
        Field("58", country),
        Field("59", name),
        Field("60", city),
        *([Field("62", fields=(Field("05", reference),))] if reference else []),
    ]
    return encode(fields)
