"""Manual ledger adjustments with maker-checker (R-SEC-10): one operator proposes, another
approves, and only the approval moves money (through ``ledger.service``). See ``service``."""
