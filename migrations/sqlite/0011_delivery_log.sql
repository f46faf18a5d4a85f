-- The delivery log searched by customer or address (the admin API's
-- `GET /v1/admin/deliveries`, the dashboard): a customer's entries, newest
-- first.
CREATE INDEX IF NOT EXISTS deliveries_customer ON deliveries (customer_id, id);
