-- When each email first became due: when the engine decided it, or for an
-- email that follows a wait, when the wait ended (not when a late scheduler
-- got to it). `not_before` starts there but moves with deferrals and retries;
-- `due_at` does not, so the sender can skip an email that would go out more
-- than the policies' `stale_after` after it was due.
--
-- Nullable and without a default, so adding it rewrites no row of a large
-- outbox. Rows written before (or by an older instance during a rolling
-- upgrade) have none and are read as due at `created_at`, which is exactly
-- when they were due: older versions enqueued every email at its decision.
ALTER TABLE outbox ADD COLUMN due_at TIMESTAMPTZ;

-- The claim walks the rows it may take (pending or being sent) in the order
-- they go out, `(not_before, id)`, and stops at its limit: with a backlog it
-- reads a batch's worth of rows, not the whole backlog (for each row it asks
-- the customer's other unfinished rows whether one must go first, through
-- `outbox_customer`). `next_outbox` reads it too; it replaces `outbox_due`.
CREATE INDEX outbox_queue ON outbox (not_before, id) WHERE status IN ('pending', 'sending');
DROP INDEX outbox_due;
