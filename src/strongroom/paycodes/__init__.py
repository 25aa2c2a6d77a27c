"""Consumer-presented payment codes (SPEC R-CODE-1): devices with a secret, 24-digit codes
derived from it and the time (``domain``, documented in docs/payment-codes.md), and the
server's resolve-and-consume for the charge path (``service``)."""
