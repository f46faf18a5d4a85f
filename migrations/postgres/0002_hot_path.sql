-- Ingest writes fewer index entries and enrollment updates leave less behind.
-- Nothing reads events by customer yet; an index for it comes back with its reader.
DROP INDEX IF EXISTS events_customer;
-- Every wake-up and most events update an enrollment (a new row version each
-- time, as wake_at, status or step change): vacuum it early, and leave room
-- on each page for updates that can stay on it.
ALTER TABLE enrollments SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE outbox SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05);
