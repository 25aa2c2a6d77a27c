"""double entry: one debit and one credit entry per transfer, checked by the database

PostgreSQL: a unique key on (transfer_id, side) and a deferred constraint trigger that fires for
every transfer and every entry written and checks, at commit, that the transfer has exactly one
debit and one credit entry and that both carry the transfer's asset, accounts and amount (the
trigger it replaces fired on credit entries only and compared the two sides with each other, so a
transfer with a debit entry alone went through). SQLite has no deferred triggers: it gets the same
unique key, a check of each entry against its transfer as it is written, and the CHECKs that
0001 and 0003 created on PostgreSQL only, as BEFORE INSERT/UPDATE triggers (a table CHECK would
need a table rebuild). Amounts are decimal text there, so the checks read them as text: exact at
any size. The append-only triggers on the journal and the audit log exist on both since 0001/0002.

Revision ID: 2026_12_06_0004
Revises: 2026_11_22_0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_06_0004"
down_revision = "2026_11_22_0003"
branch_labels = None
depends_on = None

UNIQUE_SIDE = "uq_ledger_entries_transfer_id_side"

# What each entry of a transfer must carry, by the transfer's kind (ledger.service writes it so):
# a posted transfer moves its amount; a pending one reserves it; posting a pending transfer moves
# the amount posted and releases the whole reservation; voiding releases the reservation.
# ``t`` is the transfer, ``p`` the pending transfer it resolves (if any).
EXPECTED_POSTED = (
    "CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE {zero} END"
)
EXPECTED_PENDING = (
    "CASE t.kind WHEN 'posted' THEN {zero} WHEN 'pending' THEN t.amount_minor"
    " WHEN 'void_pending' THEN {negate}(t.amount_minor) ELSE {negate}(p.amount_minor) END"
)


def _entry_matches(entry: str, *, zero: str, negate: str) -> str:
    """SQL: entry ``entry`` has transfer ``t``'s asset, account for its side and amounts."""
    return (
        f"{entry}.asset = t.asset AND {entry}.account_id = CASE {entry}.side"
        " WHEN 'D' THEN t.debit_account_id ELSE t.credit_account_id END"
        f" AND {entry}.posted_minor = {EXPECTED_POSTED.format(zero=zero)}"
        f" AND {entry}.pending_minor = {EXPECTED_PENDING.format(zero=zero, negate=negate)}"
    )


PG_DOUBLE_ENTRY = f"""
CREATE FUNCTION ledger_transfer_double_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target text;
    found record;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        target := NEW.transfer_id;
    ELSE
        target := NEW.id;
    END IF;
    SELECT count(e.id) FILTER (WHERE e.side = 'D') AS debits,
           count(e.id) FILTER (WHERE e.side = 'C') AS credits,
           count(e.id) FILTER (WHERE {_entry_matches("e", zero="0", negate="-")}) AS matching
      INTO found
      FROM ledger_transfers t
      LEFT JOIN ledger_transfers p ON p.id = t.pending_id
      LEFT JOIN ledger_entries e ON e.transfer_id = t.id
     WHERE t.id = target;
    IF found.debits <> 1 OR found.credits <> 1 THEN
        RAISE EXCEPTION 'ledger transfer % does not balance: % debit and % credit entries, '
            'not one of each', target, found.debits, found.credits
            USING ERRCODE = 'check_violation';
    END IF;
    IF found.matching <> 2 THEN
        RAISE EXCEPTION 'ledger transfer % does not balance: its entries differ from its '
            'asset, accounts or amount', target USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER ledger_entries_balanced ON ledger_entries;
DROP FUNCTION ledger_transfer_balanced();

CREATE CONSTRAINT TRIGGER ledger_entries_double_entry
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_double_entry();
CREATE CONSTRAINT TRIGGER ledger_transfers_double_entry
    AFTER INSERT ON ledger_transfers
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_double_entry();
"""  # noqa: S608 (built from the constants above, no input)

# The 0001 trigger, put back by the downgrade.
PG_BALANCED_0001 = """
DROP TRIGGER ledger_transfers_double_entry ON ledger_transfers;
DROP TRIGGER ledger_entries_double_entry ON ledger_entries;
DROP FUNCTION ledger_transfer_double_entry();

CREATE FUNCTION ledger_transfer_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced record;
BEGIN
    SELECT asset,
           sum(CASE side WHEN 'D' THEN posted_minor ELSE -posted_minor END) AS posted,
           sum(CASE side WHEN 'D' THEN pending_minor ELSE -pending_minor END) AS pending
      INTO unbalanced
      FROM ledger_entries
     WHERE transfer_id = NEW.transfer_id
     GROUP BY asset
    HAVING sum(CASE side WHEN 'D' THEN posted_minor ELSE -posted_minor END) <> 0
        OR sum(CASE side WHEN 'D' THEN pending_minor ELSE -pending_minor END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transfer % does not balance in %', NEW.transfer_id,
            unbalanced.asset USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.side = 'C')
    EXECUTE FUNCTION ledger_transfer_balanced();
"""

# ----------------------------------------------------------------------------------- SQLite
#
# Amounts are canonical decimal text (``str(int)``, see db.Amount), so a sign or a bound is a
# test on the text: exact at any size, where SQLite's numbers would stop at 2^63.

AMOUNT_MAX = str(2**128 - 1)


def _whole(column: str) -> str:
    """SQL: ``column`` is a whole number >= 0 written as ``str(int)`` writes it."""
    return (
        f"({column} <> '' AND {column} NOT GLOB '*[^0-9]*'"
        f" AND ({column} = '0' OR {column} NOT GLOB '0*'))"
    )


def _signed(column: str) -> str:
    """SQL: ``column`` is a whole number of either sign written as ``str(int)`` writes it."""
    magnitude = f"substr({column}, 2)"
    return f"({_whole(column)} OR ({column} GLOB '-[1-9]*' AND {_whole(magnitude)}))"


def _at_most(column: str, bound: str) -> str:
    """SQL: the whole number ``column`` is <= ``bound`` (same-length digit strings compare as
    numbers)."""
    return (
        f"(length({column}) < {len(bound)}"
        f" OR (length({column}) = {len(bound)} AND {column} <= '{bound}'))"
    )


BALANCE_FIELDS = (
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
    "negative_limit_minor",
)
# Exact in SQLite integers while every field is below 10^18 (the sum stays below 2^63); wider
# balances are left to the service, which checks the floor on every transfer on both databases.
WITHIN_FLOOR = (
    "NEW.allow_negative OR "
    + " OR ".join(f"length(NEW.{name}) > 18" for name in BALANCE_FIELDS)
    + " OR CAST(NEW.credits_posted AS INTEGER) - CAST(NEW.debits_posted AS INTEGER)"
    " - CAST(NEW.debits_pending AS INTEGER) >= -CAST(NEW.negative_limit_minor AS INTEGER)"
)

# The half of the PostgreSQL double-entry trigger that needs no deferring: each entry carries
# its transfer's asset, account and amounts (the transfer is written first; a missing one is the
# foreign key's to report). Built from constants only, hence the noqa.
ENTRY_MATCHES_TRANSFER = (
    "NOT EXISTS (SELECT 1 FROM ledger_transfers AS t WHERE t.id = NEW.transfer_id)"  # noqa: S608
    " OR EXISTS (SELECT 1 FROM ledger_transfers AS t"
    " LEFT JOIN ledger_transfers AS p ON p.id = t.pending_id WHERE t.id = NEW.transfer_id AND "
    + _entry_matches("NEW", zero="'0'", negate="'-' ||")
    + ")"
)

# table -> (the statements checked, {PostgreSQL constraint name: condition on NEW}).
SQLITE_CHECKS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "ledger_accounts": (
        ("INSERT", "UPDATE"),
        {
            "ck_ledger_accounts_fields_non_negative": " AND ".join(
                _whole(f"NEW.{name}") for name in BALANCE_FIELDS
            ),
            "ck_ledger_accounts_within_floor": WITHIN_FLOOR,
        },
    ),
    "ledger_transfers": (
        ("INSERT",),  # UPDATE is refused outright: the journal is append-only
        {
            "ck_ledger_transfers_amount_positive": f"{_whole('NEW.amount_minor')}"
            f" AND NEW.amount_minor <> '0' AND {_at_most('NEW.amount_minor', AMOUNT_MAX)}",
            "ck_ledger_transfers_distinct_accounts": "NEW.debit_account_id"
            " <> NEW.credit_account_id",
            "ck_ledger_transfers_kind": "NEW.kind IN ('posted', 'pending', 'post_pending',"
            " 'void_pending')",
            "ck_ledger_transfers_pending_link": "(NEW.pending_id IS NULL)"
            " = (NEW.kind IN ('posted', 'pending'))",
            "ck_ledger_transfers_timeout_only_pending": "NEW.timeout_at IS NULL"
            " OR NEW.kind = 'pending'",
        },
    ),
    "ledger_entries": (
        ("INSERT",),
        {
            "ck_ledger_entries_posted_non_negative": _whole("NEW.posted_minor"),
            "ck_ledger_entries_amounts_whole": f"{_signed('NEW.pending_minor')}"
            f" AND {_signed('NEW.balance_after')}",
            "ck_ledger_entries_moves_something": "NEW.posted_minor <> '0'"
            " OR NEW.pending_minor <> '0'",
            "ck_ledger_entries_match_transfer": ENTRY_MATCHES_TRANSFER,
        },
    ),
    "por_reserves": (
        ("INSERT", "UPDATE"),
        {"ck_por_reserves_amount_non_negative": _whole("NEW.amount_minor")},
    ),
}


def _sqlite_trigger(table: str, verb: str, checks: dict[str, str]) -> str:
    body = " ".join(
        f"SELECT RAISE(ABORT, 'CHECK constraint failed: {name}') WHERE NOT ({condition});"
        for name, condition in checks.items()
    )
    return f"CREATE TRIGGER {table}_checks_{verb.lower()} BEFORE {verb} ON {table} BEGIN {body} END"


def upgrade() -> None:
    op.create_index(UNIQUE_SIDE, "ledger_entries", ["transfer_id", "side"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DOUBLE_ENTRY)
        return
    for table, (verbs, checks) in SQLITE_CHECKS.items():
        for verb in verbs:
            op.execute(_sqlite_trigger(table, verb, checks))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_BALANCED_0001)
    else:
        for table, (verbs, _) in SQLITE_CHECKS.items():
            for verb in verbs:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_checks_{verb.lower()}")
    op.drop_index(UNIQUE_SIDE, table_name="ledger_entries")
