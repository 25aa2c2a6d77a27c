"""Tier limits and T+N risk holds (SPEC §4 limits table, R-LIMIT-1, R-KYC-6, §5)."""
