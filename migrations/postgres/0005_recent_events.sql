-- no-transaction
-- (Built CONCURRENTLY, outside a transaction: the events table only grows,
-- and a plain CREATE INDEX would hold off every ingest while it builds.)
-- Out-of-order events: when an enrollment starts or starts waiting, it looks
-- back at the customer's recent events (the types a sequence waits for or
-- exits on), so an event that arrived before its turn still counts. This is
-- the reader the events_customer index was dropped for want of in 0002.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_customer ON events (customer_id, occurred_at);
