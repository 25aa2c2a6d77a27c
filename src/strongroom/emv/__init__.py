"""EMVCo merchant-presented QR payloads (SPEC R-CODE-2): a pure codec, no I/O.

``decode(payload)`` checks the TLV structure and the CRC and returns the fields (templates
26-51, 62, 64 and 80-99 nested; unknown ids kept as they are); ``encode(fields)`` writes them
back and appends the CRC. ``encode(decode(p)) == p`` for every payload ``decode`` accepts.
"""

from strongroom.emv.codec import (
    CRC_ID,
    EmvError,
    Field,
    Payload,
    crc16,
    decode,
    encode,
    is_template,
)
from strongroom.emv.document import fields_from_json, payload_to_json

__all__ = [
    "CRC_ID",
    "EmvError",
    "Field",
    "Payload",
    "crc16",
    "decode",
    "encode",
    "fields_from_json",
    "is_template",
    "payload_to_json",
]
