"""Names of the EMVCo MPM fields (for people reading ``strongroom emv decode``), and the Hong
Kong FPS view of a payload (HKICL's merchant account template)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from strongroom.emv.codec import Payload

FPS_IDENTIFIER: Final = "hk.com.hkicl"

TOP_LEVEL: Final = {
    "00": "payload_format_indicator",
    "01": "point_of_initiation_method",
    "52": "merchant_category_code",
    "53": "transaction_currency",
    "54": "transaction_amount",
    "55": "tip_or_convenience_indicator",
    "56": "convenience_fee_fixed",
    "57": "convenience_fee_percentage",
    "58": "country_code",
    "59": "merchant_name",
    "60": "merchant_city",
    "61": "postal_code",
    "62": "additional_data",
    "63": "crc",
    "64": "merchant_information_language",
}
ADDITIONAL_DATA: Final = {
    "01": "bill_number",
    "02": "mobile_number",
    "03": "store_label",
    "04": "loyalty_number",
    "05": "reference_label",
    "06": "customer_label",
    "07": "terminal_label",
    "08": "purpose_of_transaction",
    "09": "additional_consumer_data_request",
}
LANGUAGE: Final = {
    "00": "language_preference",
    "01": "merchant_name_alternate",
    "02": "merchant_city_alternate",
}
ACCOUNT_TEMPLATE: Final = {"00": "globally_unique_identifier"}
FPS: Final = {
    "00": "globally_unique_identifier",
    "02": "fps_id",
    "03": "mobile_number",
    "04": "email",
}


def name_of(field_id: str, parent: str | None = None) -> str | None:
    """The field's name, or None for an id without one here (kept, never refused)."""
    if parent is None:
        if "02" <= field_id <= "51":
            return "merchant_account_information"
        if "80" <= field_id <= "99":
            return "unreserved_template"
        return TOP_LEVEL.get(field_id)
    if parent == "62":
        return ADDITIONAL_DATA.get(field_id)
    if parent == "64":
        return LANGUAGE.get(field_id)
    if "26" <= parent <= "51":
        return FPS.get(field_id) if field_id in FPS else ACCOUNT_TEMPLATE.get(field_id)
    return None


@dataclass(frozen=True, slots=True)
class FpsAccount:
    """Where a Hong Kong FPS code pays: an FPS id, a mobile number or an email."""

    template_id: str
    fps_id: str | None
    mobile: str | None
    email: str | None


def fps_account(payload: Payload) -> FpsAccount | None:
    """The first merchant account template of HKICL's FPS (sub-field 00 ``hk.com.hkicl``)."""
    for field in payload.fields:
        identifier = field.get("00")
        fps = identifier is not None and (identifier.value or "").lower() == FPS_IDENTIFIER
        if field.fields is not None and fps:
            return FpsAccount(
                template_id=field.id,
                fps_id=_text(field.get("02")),
                mobile=_text(field.get("03")),
                email=_text(field.get("04")),
            )
    return None


def _text(found: object) -> str | None:
    return getattr(found, "value", None)


def is_dynamic(payload: Payload) -> bool:
    """Point of initiation 12: a dynamic code (carries the amount, single use)."""
    return payload.value("01") == "12"
