"""ledger checks: a batch's accounts and transfers looked up once per statement, not per row

PostgreSQL only (issue #14). An 8,000-transfer batch over 1,000 accounts spent about a third of
the time it holds its account locks in the database's own checks of what it wrote, because they
looked things up once per row. For a wide statement (128 transfers or more: a batch's; narrower
ones, such as a single transfer's group commit, keep 0032's checks, whose plans cost less than
the look ups they would save):

* The deferred double-entry check (0032) looked up both accounts of every transfer (16,000 look
  ups in a batch, into the most updated rows of the database) at commit, under the batch's
  account locks. The statement trigger that queues the transfers
  (``ledger_transfers_queue_check``) now checks them, once per distinct (account, asset) of the
  statement: at most 1,000 look ups in such a batch, when the transfers are written, which for a
  large batch is before it locks its accounts. The refusal is the same (``ledger transfer <id>
  names an account that does not exist in its asset``, ``foreign_key_violation``), raised by the
  statement that writes the transfer instead of at commit; the queued row says so
  (``accounts_checked``) and the commit check skips that part.
* The check that every entry names an existing transfer (0032) looked the transfer up once per
  entry. In a transaction that wrote a wide statement of transfers it now does so once per
  distinct transfer of the statement, and, where the statement wrote both entries of a transfer,
  checks them against it right there (the entries are in the statement's transition table; the
  unique ``(transfer_id, side)`` key keeps any other entry out). The wide queued rows of the
  transaction whose every transfer is so checked are removed (the queue trigger keeps their ids
  in a setting local to the transaction), and the commit check returns at once for a removed
  row: a batch's commit no longer looks up its 8,000 transfers and 16,000 entries again under its
  locks. Entries written apart from their pair are checked at commit, in full, as before.

What the database refuses is unchanged; only when and how often it looks.

Revision ID: 2026_12_07_0043
Revises: 2026_12_06_0042
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_07_0043"
down_revision = "2026_12_06_0042"
branch_labels = None
depends_on = None

# As migration 0032 (its constants are copied, not imported: a migration stays as written).
EXPECTED_POSTED = "CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END"
EXPECTED_PENDING = (
    "CASE t.kind WHEN 'posted' THEN 0 WHEN 'pending' THEN t.amount_minor"
    " WHEN 'void_pending' THEN -(t.amount_minor) ELSE -(p.amount_minor) END"
)
MATCHES = (
    "e.asset = t.asset AND e.account_id = CASE e.side"
    " WHEN 'D' THEN t.debit_account_id ELSE t.credit_account_id END"
    f" AND e.posted_minor = {EXPECTED_POSTED} AND e.pending_minor = {EXPECTED_PENDING}"
)

# Statements of at least this many transfers (a batch's) take the per-statement checks below,
# and so do the entries written in a transaction that wrote one; narrower ones (a single
# transfer's group commit writes a few rows) keep 0032's, whose plans are cheaper than the
# look ups they would save (PL/pgSQL plans a query on a transition table at every call).
WIDE_TRANSFERS = 128

ADD_COLUMN = """
ALTER TABLE ledger_transfer_checks ADD COLUMN accounts_checked boolean NOT NULL DEFAULT false;
"""
DROP_COLUMN = """
ALTER TABLE ledger_transfer_checks DROP COLUMN accounts_checked;
"""

QUEUE_CHECK = f"""
CREATE OR REPLACE FUNCTION ledger_transfers_queue_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing record;
    bad text;
    queued bigint;
    wide boolean;
BEGIN
    INSERT INTO ledger_transfer_checks (transfer_ids, accounts_checked)
    SELECT array_agg(id), count(*) >= {WIDE_TRANSFERS} FROM written HAVING count(*) > 0
    RETURNING id, accounts_checked INTO queued, wide;
    IF NOT coalesce(wide, false) THEN
        RETURN NULL;  -- the commit check looks the accounts up too
    END IF;
    -- Each distinct (account, asset) the statement's transfers name, looked up once, by key
    -- (LATERAL: whatever plan the session caches, never an anti-join over the whole table).
    SELECT named.account_id, named.asset INTO missing
      FROM (SELECT debit_account_id AS account_id, asset FROM written
            UNION
            SELECT credit_account_id, asset FROM written) AS named
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM ledger_accounts AS a
                          WHERE a.id = named.account_id AND a.asset = named.asset) AS c
     WHERE c.n = 0
     LIMIT 1;
    IF FOUND THEN
        SELECT w.id INTO bad FROM written AS w
         WHERE w.asset = missing.asset
           AND missing.account_id IN (w.debit_account_id, w.credit_account_id)
         LIMIT 1;
        RAISE EXCEPTION 'ledger transfer % names an account that does not exist in its asset',
            bad USING ERRCODE = 'foreign_key_violation';
    END IF;
    -- This transaction's wide queued rows, for ledger_entries_check_transfer (a setting local
    -- to the transaction: gone at its end, and with a savepoint rolled back, as the rows are).
    PERFORM set_config('strongroom.ledger_checks',
                       concat_ws(',', nullif(current_setting('strongroom.ledger_checks', true),
                                             ''), queued),
                       true);
    RETURN NULL;
END $$;
"""  # noqa: S608 (built from the constants above, no input)


def _bad_transfer(*, with_accounts: bool) -> str:
    """The first queued transfer that breaks the double entry (``bad``); ``with_accounts``:
    also one whose accounts do not exist in its asset (0032's query, for narrow statements)."""
    accounts = "bool_and(d.id IS NOT NULL AND k.id IS NOT NULL)" if with_accounts else "true"
    joins = (
        """
              LEFT JOIN ledger_accounts d ON d.id = t.debit_account_id AND d.asset = t.asset
              LEFT JOIN ledger_accounts k ON k.id = t.credit_account_id AND k.asset = t.asset"""
        if with_accounts
        else ""
    )
    return f"""
        SELECT u.id, c.*
          INTO bad
          FROM unnest(NEW.transfer_ids) AS u(id)
         CROSS JOIN LATERAL (
            SELECT count(e.id) FILTER (WHERE e.side = 'D') AS debits,
                   count(e.id) FILTER (WHERE e.side = 'C') AS credits,
                   count(e.id) FILTER (WHERE {MATCHES}) AS matching,
                   {accounts} AS accounts
              FROM ledger_transfers t
              LEFT JOIN ledger_transfers p ON p.id = t.pending_id{joins}
              LEFT JOIN ledger_entries e ON e.transfer_id = t.id
             WHERE t.id = u.id
         ) AS c
         WHERE c.debits <> 1 OR c.credits <> 1 OR c.matching <> 2 OR NOT c.accounts
         LIMIT 1;"""  # noqa: S608 (built from the constants above, no input)


_CHECKS_RUN_HEAD = """
CREATE OR REPLACE FUNCTION ledger_transfer_checks_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
"""
_REFUSE_BAD = """    IF bad.id IS NOT NULL THEN
        IF bad.debits <> 1 OR bad.credits <> 1 THEN
            RAISE EXCEPTION 'ledger transfer % does not balance: % debit and % credit entries, '
                'not one of each', bad.id, bad.debits, bad.credits
                USING ERRCODE = 'check_violation';
        ELSIF bad.matching <> 2 THEN
            RAISE EXCEPTION 'ledger transfer % does not balance: its entries differ from its '
                'asset, accounts or amount', bad.id USING ERRCODE = 'check_violation';
        END IF;
        RAISE EXCEPTION 'ledger transfer % names an account that does not exist in its asset',
            bad.id USING ERRCODE = 'foreign_key_violation';
    END IF;
    DELETE FROM ledger_transfer_checks WHERE id = NEW.id;
    RETURN NULL;
END $$;
"""
"""The commit check's refusal of ``bad`` (as 0032 words it), and the queued row's removal."""

CHECKS_RUN = f"""{_CHECKS_RUN_HEAD}    IF NEW.accounts_checked THEN
        PERFORM 1 FROM ledger_transfer_checks WHERE id = NEW.id;
        IF NOT FOUND THEN
            -- The statement that wrote these transfers' entries checked every one of them
            -- (ledger_entries_check_transfer) and removed the row, in this transaction.
            RETURN NULL;
        END IF;
    END IF;
    -- LATERAL: each queued id is looked up by key (pk, the entries' unique key, the accounts'
    -- pk), whatever the size of the tables; a join over whole tables would grow with them.
    -- The accounts of a wide statement were checked when it wrote its transfers.
    IF NEW.accounts_checked THEN{_bad_transfer(with_accounts=False)}
    ELSE{_bad_transfer(with_accounts=True)}
    END IF;
{_REFUSE_BAD}"""

# A wide statement's entries, one row per transfer: how many debit and credit entries it wrote
# and what the one of each carries (max: with one entry per side, its value).
PER_TRANSFER = """
    SELECT transfer_id,
           count(*) FILTER (WHERE side = 'D') AS debits,
           count(*) FILTER (WHERE side = 'C') AS credits,
           max(account_id) FILTER (WHERE side = 'D') AS d_account,
           max(account_id) FILTER (WHERE side = 'C') AS c_account,
           max(asset) FILTER (WHERE side = 'D') AS d_asset,
           max(asset) FILTER (WHERE side = 'C') AS c_asset,
           max(posted_minor) FILTER (WHERE side = 'D') AS d_posted,
           max(posted_minor) FILTER (WHERE side = 'C') AS c_posted,
           max(pending_minor) FILTER (WHERE side = 'D') AS d_pending,
           max(pending_minor) FILTER (WHERE side = 'C') AS c_pending
      FROM written GROUP BY transfer_id
"""
# A transfer whose debit and credit entries this statement wrote, both carrying what it implies.
BOTH_MATCH = (
    "w.debits = 1 AND w.credits = 1 AND w.d_asset = t.asset AND w.c_asset = t.asset"
    " AND w.d_account = t.debit_account_id AND w.c_account = t.credit_account_id"
    f" AND w.d_posted = {EXPECTED_POSTED} AND w.c_posted = {EXPECTED_POSTED}"
    f" AND w.d_pending = {EXPECTED_PENDING} AND w.c_pending = {EXPECTED_PENDING}"
)

_ORPHAN_PER_ENTRY = """
    SELECT w.transfer_id INTO orphan
      FROM written AS w
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM ledger_transfers AS t
                          WHERE t.id = w.transfer_id) AS c
     WHERE c.n = 0
     LIMIT 1;"""
"""0032's check that the entries name transfers: each entry's transfer looked up by key."""

ENTRIES_CHECK = f"""
CREATE OR REPLACE FUNCTION ledger_entries_check_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan text;
BEGIN
    IF coalesce(current_setting('strongroom.ledger_checks', true), '') = '' THEN
        -- No wide statement of transfers in this transaction (ledger_transfers_queue_check):
        -- as 0032, each entry's transfer looked up by key.
{_ORPHAN_PER_ENTRY}
    ELSE
        -- Each distinct transfer of the statement's entries, looked up once by key (LATERAL):
        -- refused if it does not exist; checked in full if the statement wrote both of its
        -- entries (the unique (transfer_id, side) key keeps any other entry out). The wide
        -- rows this transaction queued (ledger_transfers_queue_check) whose every transfer is
        -- so checked are removed: the commit check has nothing left to do for them. Any other
        -- is checked at commit, as before.
        WITH checked AS MATERIALIZED (
            SELECT w.transfer_id, t.id IS NOT NULL AS known, coalesce({BOTH_MATCH}, false) AS ok
              FROM ({PER_TRANSFER}) AS w
              LEFT JOIN LATERAL (SELECT * FROM ledger_transfers AS t
                                  WHERE t.id = w.transfer_id) AS t ON true
              LEFT JOIN LATERAL (SELECT * FROM ledger_transfers AS p
                                  WHERE p.id = t.pending_id) AS p ON true
        ), done AS (
            DELETE FROM ledger_transfer_checks AS q
             WHERE q.id = ANY(string_to_array(nullif(current_setting('strongroom.ledger_checks',
                                                                       true), ''), ',')::bigint[])
               AND NOT EXISTS (SELECT u.id FROM unnest(q.transfer_ids) AS u(id)
                               EXCEPT
                               SELECT transfer_id FROM checked WHERE ok)
        )
        SELECT transfer_id INTO orphan FROM checked WHERE NOT known LIMIT 1;
    END IF;
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entry names transfer %, which does not exist', orphan
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
"""  # noqa: S608 (built from the constants above, no input)


# 0032's versions, restored by the downgrade.
QUEUE_CHECK_0032 = """
CREATE OR REPLACE FUNCTION ledger_transfers_queue_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_transfer_checks (transfer_ids)
    SELECT array_agg(id) FROM written HAVING count(*) > 0;
    RETURN NULL;
END $$;
"""

CHECKS_RUN_0032 = f"{_CHECKS_RUN_HEAD}{_bad_transfer(with_accounts=True)}\n{_REFUSE_BAD}"

ENTRIES_CHECK_0032 = f"""
CREATE OR REPLACE FUNCTION ledger_entries_check_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan text;
BEGIN
{_ORPHAN_PER_ENTRY}
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entry names transfer %, which does not exist', orphan
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADD_COLUMN + QUEUE_CHECK + CHECKS_RUN + ENTRIES_CHECK)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(QUEUE_CHECK_0032 + CHECKS_RUN_0032 + ENTRIES_CHECK_0032 + DROP_COLUMN)
