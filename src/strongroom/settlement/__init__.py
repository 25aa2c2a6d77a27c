"""Daily merchant settlement and batch payouts from a CSV (R-MERCH-3)."""
