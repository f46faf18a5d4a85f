-- The claim walks the rows it may take (pending or being sent) in the order
-- they go out, `(not_before, id)`, and stops at its limit: with a backlog it
-- reads a batch's worth of rows, not the whole backlog (for each row it asks
-- the customer's other unfinished rows whether one must go first, through
-- `outbox_customer`). `next_outbox` reads it too; it replaces `outbox_due`.
CREATE INDEX outbox_queue ON outbox (not_before, id) WHERE status IN ('pending', 'sending');
DROP INDEX outbox_due;
