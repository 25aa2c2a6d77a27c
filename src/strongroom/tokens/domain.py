"""Card numbers (pure): Luhn, and a random number from a BIN range."""

from __future__ import annotations

import secrets
from typing import Final

from strongroom.errors import invariant

NUMBER_DIGITS: Final = 16


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` Luhn-valid."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:  # doubled: the check digit will sit to the right of it
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    if not number or not (number.isascii() and number.isdigit()):
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def new_number(bin_start: str, bin_end: str) -> str:
    """A random 16-digit Luhn-valid number whose prefix lies in ``bin_start..bin_end``."""
    invariant(len(bin_start) == len(bin_end) and bin_start <= bin_end, "a BIN range")
    low, high = int(bin_start), int(bin_end)
    prefix = f"{low + secrets.randbelow(high - low + 1):0{len(bin_start)}d}"
    body_digits = NUMBER_DIGITS - 1 - len(prefix)
    body = "".join(str(secrets.randbelow(10)) for _ in range(body_digits))
    number = prefix + body
    return number + luhn_check_digit(number)


def in_range(number: str, bin_start: str, bin_end: str) -> bool:
    return bin_start <= number[: len(bin_start)] <= bin_end
