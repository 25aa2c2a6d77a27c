"""strongroom-verify: a standalone proof-of-reserves verifier (standard library only).

It checks a user's inclusion proof offline: Strongroom's own `strongroom-por-v1` format and the
published formats of MEXC, OKX (v1 and v2), Bitget and BitMEX, detected automatically.
"""

from strongroom_verify.result import Check, Result

__all__ = ["Check", "Result", "__version__"]

__version__ = "1.0.0"
