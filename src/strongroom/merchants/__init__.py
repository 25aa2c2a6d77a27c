"""Merchants (R-MERCH-1..4, R-XB-1): onboarding, terminal keys and roles, charges with the
merchant discount rate as a linked fee leg, refunds, and signed webhooks from an outbox."""
