-- no-transaction
-- (Built CONCURRENTLY, outside a transaction, as in 0005: the events table is
-- the largest, and a plain CREATE INDEX would hold off every ingest while it
-- builds.)
-- The dashboard's reports read events by type over a span of time: the
-- orders of a period (conversions, retention, repeat orders) and the
-- bounces over time. With the customer in the index, counting a period's
-- ordering customers reads the index alone.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_type ON events (type, occurred_at, customer_id);
