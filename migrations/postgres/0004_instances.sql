-- Crash recovery in seconds: each running instance keeps a heartbeat, and an
-- outbox row remembers which instance claimed it. A row claimed by an
-- instance whose heartbeat has lapsed is taken over at once, whatever its lease.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    about        TEXT NOT NULL            -- host and process id, for operators
);
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
-- The rows the sender holds (claimed or sending), for the take-over check.
CREATE INDEX outbox_claimed ON outbox (claimed_by) WHERE lease_until IS NOT NULL;
