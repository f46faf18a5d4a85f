-- no-transaction
-- (Built CONCURRENTLY, outside a transaction: the outbox is written all the
-- time, and a plain CREATE INDEX would hold off every send while it builds.)
-- A bounce report that names the Message-ID of the email it is about (a DSN's
-- returned headers, a relay's copy of them) is matched to the email, and so
-- to the customer it was sent to, even when the address that bounced is
-- another (a forwarding address).
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_message_id ON outbox (message_id)
    WHERE message_id IS NOT NULL;
