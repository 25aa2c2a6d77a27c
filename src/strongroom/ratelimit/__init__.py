"""Rate limits (R-SEC-9) counted in the database, so that every server process shares them.

``models.py``: one bucket per rule and key (an address, an account); ``service.py``: the count
(one upsert per rule), the refusal (429 ``rate_limited``), giving a count back, and the sweep of
ended windows that the worker runs. The HTTP layer decides what to count (``api/throttle.py``)."""
