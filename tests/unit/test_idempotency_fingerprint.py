"""A request's fingerprint is stored with its Idempotency-Key for the key's whole retention: it
must stay byte for byte what it was (issue #14 made its encoder once instead of per call), or a
retry after an upgrade would be refused as ``idempotency_key_reused``."""

from __future__ import annotations

import hashlib
import json

from strongroom.movements.idempotency import fingerprint

REQUEST = {"to": "bob@example.com", "asset": "HKD", "amount": "1.25", "note": '茶 "tea" é'}


def test_the_fingerprint_is_the_digest_of_the_canonical_json_it_always_was():
    canonical = json.dumps(
        ["POST /v1/transfers", REQUEST], sort_keys=True, separators=(",", ":")
    )  # the formula every stored key was made with (ASCII-escaped, keys sorted, no blanks)
    assert (
        fingerprint("POST /v1/transfers", REQUEST) == hashlib.sha256(canonical.encode()).hexdigest()
    )
    assert canonical.isascii() and canonical.startswith('["POST /v1/transfers",{"amount"')


def test_another_request_or_operation_is_another_fingerprint():
    base = fingerprint("POST /v1/transfers", REQUEST)
    assert fingerprint("POST /v1/transfers", {**REQUEST, "amount": "1.26"}) != base
    assert fingerprint("POST /v1/gifts", REQUEST) != base
    assert fingerprint("POST /v1/transfers", dict(reversed(list(REQUEST.items())))) == base
