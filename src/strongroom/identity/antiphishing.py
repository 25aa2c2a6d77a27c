"""Anti-phishing code rules (R-APC-1). The banner itself is added by ``notify.render``."""

from __future__ import annotations

import re

from strongroom.identity import passwords
from strongroom.identity.errors import InvalidAntiPhishingCode

PATTERN = re.compile(r"[A-Za-z0-9]{1,6}")


def check_format(code: str) -> None:
    if PATTERN.fullmatch(code) is None:
        raise InvalidAntiPhishingCode(
            "an anti-phishing code is 1 to 6 letters (A-Z, a-z) or digits",
            reason="format",
            pattern="^[A-Za-z0-9]{1,6}$",
        )


def validate(code: str, *, password_hash: str) -> str:
    """The code if it may be used; ``invalid_anti_phishing_code`` with ``details.reason``
    (``format``, ``common_password`` or ``equals_password``) otherwise."""
    check_format(code)
    if passwords.is_common(code):
        raise InvalidAntiPhishingCode(
            "this code is one of the most common passwords: choose another",
            reason="common_password",
        )
    if passwords.verify(password_hash, code):
        raise InvalidAntiPhishingCode(
            "the anti-phishing code must not be your password", reason="equals_password"
        )
    return code
