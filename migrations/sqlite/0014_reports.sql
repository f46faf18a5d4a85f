-- The dashboard's reports read events by type over a span of time: the
-- orders of a period (conversions, retention, repeat orders) and the
-- bounces over time. With the customer in the index, counting a period's
-- ordering customers reads the index alone.
CREATE INDEX IF NOT EXISTS events_type ON events (type, occurred_at, customer_id);
