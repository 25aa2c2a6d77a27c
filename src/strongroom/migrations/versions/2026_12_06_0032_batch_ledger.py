"""batches: the double-entry check once per statement, set-based, and fewer per-row checks

PostgreSQL only (issue #14: an 8,000-transfer batch spent most of its database time in per-row
work). What changes, and why the guarantees stay:

* The deferred double-entry check ran once per transfer at commit (0004, 0017): a PL/pgSQL call
  and three index lookups for each row. Now a statement-level trigger on ``ledger_transfers``
  queues the ids of every transfer a statement writes (its transition table, one row in
  ``ledger_transfer_checks`` per statement), and a deferred constraint trigger on that queue
  checks them at commit in ONE set-based query, then removes the queue row. The check is the
  same: exactly one debit and one credit entry, each carrying the transfer's asset, its account
  for the side and the amounts its kind implies; the refusal reads the same
  (``ledger transfer <id> does not balance: ...``). Any statement that writes a transfer, by any
  code path, queues it: the database still refuses an unbalanced transfer at commit.
* The foreign keys from a transfer's (debit and credit account, asset) to ``ledger_accounts``
  ran one ``SELECT ... FOR KEY SHARE`` per key per row (about 0.1 s of an 8,000-transfer batch,
  the largest single cost). The commit check now also requires, set-based, that both accounts
  exist in the transfer's asset; and since a key is also what kept an account from being
  deleted or re-keyed under its transfers, ``ledger_accounts`` refuses DELETE and any change of
  ``id`` or ``asset`` (a ledger account is never deleted: SPEC P2; TRUNCATE, used by tests to
  empty the database, is not a DELETE). SQLite keeps its keys (it checks each row as written).
* The foreign key from an entry to its transfer did the same per entry (and locked the transfer
  row it had just written, a WAL record each). A statement-level trigger now checks, set-based,
  that every entry a statement writes names an existing transfer (a transfer is never deleted:
  the journal is append-only since 0001). With the commit check above (each transfer has exactly
  its two entries) and the unique ``(transfer_id, side)`` key, the journal's shape is as before.
* The unique key on ``pending_id`` becomes a unique index on the rows that have one: a posted
  transfer (nearly all of them) no longer adds a NULL to it; two resolutions of one pending
  transfer are refused as before.

Revision ID: 2026_12_06_0032
Revises: 2026_12_06_0030
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "2026_12_06_0032"
down_revision = "2026_12_06_0030"
branch_labels = None
depends_on = None

# As migration 0004 (its constants are copied, not imported: a migration stays as written).
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

PG_UPGRADE = f"""
DROP TRIGGER ledger_transfers_double_entry ON ledger_transfers;
DROP FUNCTION ledger_transfer_double_entry();

CREATE TABLE ledger_transfer_checks (
    id bigserial PRIMARY KEY,
    transfer_ids text[] NOT NULL
);

CREATE FUNCTION ledger_transfers_queue_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_transfer_checks (transfer_ids)
    SELECT array_agg(id) FROM written HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_transfers_queue_check
    AFTER INSERT ON ledger_transfers
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_queue_check();

CREATE FUNCTION ledger_transfer_checks_run() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- LATERAL: each queued id is looked up by key (pk, the entries' unique key, the accounts'
    -- pk), whatever the size of the tables; a join over whole tables would grow with them.
    SELECT u.id, c.*
      INTO bad
      FROM unnest(NEW.transfer_ids) AS u(id)
     CROSS JOIN LATERAL (
        SELECT count(e.id) FILTER (WHERE e.side = 'D') AS debits,
               count(e.id) FILTER (WHERE e.side = 'C') AS credits,
               count(e.id) FILTER (WHERE {MATCHES}) AS matching,
               bool_and(d.id IS NOT NULL AND k.id IS NOT NULL) AS accounts
          FROM ledger_transfers t
          LEFT JOIN ledger_transfers p ON p.id = t.pending_id
          LEFT JOIN ledger_accounts d ON d.id = t.debit_account_id AND d.asset = t.asset
          LEFT JOIN ledger_accounts k ON k.id = t.credit_account_id AND k.asset = t.asset
          LEFT JOIN ledger_entries e ON e.transfer_id = t.id
         WHERE t.id = u.id
     ) AS c
     WHERE c.debits <> 1 OR c.credits <> 1 OR c.matching <> 2 OR NOT c.accounts
     LIMIT 1;
    IF bad.id IS NOT NULL THEN
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

CREATE CONSTRAINT TRIGGER ledger_transfer_checks_run
    AFTER INSERT ON ledger_transfer_checks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_checks_run();

ALTER TABLE ledger_transfers DROP CONSTRAINT fk_ledger_transfers_debit_account;
ALTER TABLE ledger_transfers DROP CONSTRAINT fk_ledger_transfers_credit_account;

CREATE FUNCTION ledger_accounts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger accounts are never deleted or re-keyed: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_accounts_no_delete
    BEFORE DELETE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_keep();
CREATE TRIGGER ledger_accounts_no_rekey
    BEFORE UPDATE OF id, asset ON ledger_accounts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.asset IS DISTINCT FROM NEW.asset)
    EXECUTE FUNCTION ledger_accounts_keep();

ALTER TABLE ledger_entries DROP CONSTRAINT fk_ledger_entries_transfer_id_ledger_transfers;

CREATE FUNCTION ledger_entries_check_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orphan text;
BEGIN
    SELECT w.transfer_id INTO orphan
      FROM written AS w
     CROSS JOIN LATERAL (SELECT count(*) AS n FROM ledger_transfers AS t
                          WHERE t.id = w.transfer_id) AS c
     WHERE c.n = 0
     LIMIT 1;
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'ledger entry names transfer %, which does not exist', orphan
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_check_transfer
    AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_check_transfer();

ALTER TABLE ledger_transfers DROP CONSTRAINT uq_ledger_transfers_pending_id;
CREATE UNIQUE INDEX uq_ledger_transfers_pending_id ON ledger_transfers (pending_id)
    WHERE pending_id IS NOT NULL;
"""  # noqa: S608 (built from the constants above, no input)

PG_DOWNGRADE = f"""
-- as 0004 and 0017 left it (0017's downgrade puts the entries' trigger back on this function)
DROP INDEX uq_ledger_transfers_pending_id;
ALTER TABLE ledger_transfers
    ADD CONSTRAINT uq_ledger_transfers_pending_id UNIQUE (pending_id);

DROP TRIGGER ledger_entries_check_transfer ON ledger_entries;
DROP FUNCTION ledger_entries_check_transfer();
ALTER TABLE ledger_entries ADD CONSTRAINT fk_ledger_entries_transfer_id_ledger_transfers
    FOREIGN KEY (transfer_id) REFERENCES ledger_transfers (id);

DROP TRIGGER ledger_accounts_no_rekey ON ledger_accounts;
DROP TRIGGER ledger_accounts_no_delete ON ledger_accounts;
DROP FUNCTION ledger_accounts_keep();

ALTER TABLE ledger_transfers ADD CONSTRAINT fk_ledger_transfers_debit_account
    FOREIGN KEY (debit_account_id, asset) REFERENCES ledger_accounts (id, asset);
ALTER TABLE ledger_transfers ADD CONSTRAINT fk_ledger_transfers_credit_account
    FOREIGN KEY (credit_account_id, asset) REFERENCES ledger_accounts (id, asset);

DROP TRIGGER ledger_transfer_checks_run ON ledger_transfer_checks;
DROP FUNCTION ledger_transfer_checks_run();
DROP TRIGGER ledger_transfers_queue_check ON ledger_transfers;
DROP FUNCTION ledger_transfers_queue_check();
DROP TABLE ledger_transfer_checks;

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
           count(e.id) FILTER (WHERE {MATCHES}) AS matching
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

CREATE CONSTRAINT TRIGGER ledger_transfers_double_entry
    AFTER INSERT ON ledger_transfers
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_double_entry();
"""  # noqa: S608 (built from the constants above, no input)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_UPGRADE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DOWNGRADE)
