"""Money-moving requests, whoever sends them (the API, the Lite app's forms, the CLI, later
merchant terminals): one application service (``service.submit``) validates the request, claims
its idempotency key, hands the ledger a ``TransferSpec`` through the group-commit batcher and
stores the outcome (SPEC P3). The ledger below knows transfers only; HTTP lives above."""
