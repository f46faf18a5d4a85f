-- The engine's journal (issue 10, "the why of every email"): what it decided
-- about a customer and why (a step waited until T, a condition and its value,
-- the exit rule that fired, a sequence that did not start), one row per
-- decision, written in the same transaction as the decisions. `aftercare
-- explain` and `GET /v1/admin/customers/{id}/journey` read a customer's rows
-- by (customer_id, at). Erasing a customer's journal is
-- `DELETE FROM journal WHERE customer_id = $1`.
CREATE TABLE journal (
    id             BIGSERIAL PRIMARY KEY,
    customer_id    TEXT NOT NULL,
    at             TIMESTAMPTZ NOT NULL,
    enrollment_key TEXT,
    sequence       TEXT,
    step           TEXT,
    kind           TEXT NOT NULL,           -- enrolled | not_enrolled | condition | waiting | exited | ...
    detail         JSON NOT NULL            -- the rest of the entry (engine::journal::What)
);
CREATE INDEX journal_customer ON journal (customer_id, at);

-- A dead letter may still name its customer (its payload read leniently):
-- kept with it, so that a customer's timeline shows what of theirs could not
-- be used. NULL when the payload names none (and for letters kept before).
ALTER TABLE dead_letters ADD COLUMN customer_id TEXT;
CREATE INDEX dead_letters_customer ON dead_letters (customer_id) WHERE customer_id IS NOT NULL;
