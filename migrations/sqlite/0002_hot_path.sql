-- Nothing reads events by customer yet; an index for it comes back with its reader.
DROP INDEX IF EXISTS events_customer;
