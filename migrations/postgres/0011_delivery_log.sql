-- no-transaction
-- (Built CONCURRENTLY, outside a transaction, as in 0005: the deliveries
-- table is large and written by every send.)
-- The delivery log searched by customer or address (the admin API's
-- `GET /v1/admin/deliveries`, the dashboard): a customer's entries, newest
-- first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS deliveries_customer ON deliveries (customer_id, id);
