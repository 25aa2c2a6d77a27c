"""Virtual card numbers (SPEC R-TOKEN-1): a user's 16-digit, Luhn-valid tokens from the
configured BIN range, optionally restricted to one merchant, suspendable and deletable; the
charge path resolves a number to its owner with ``service.resolve``."""
