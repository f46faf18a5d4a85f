-- Identical dead letters are counted, not multiplied: one row per
-- (source, reason, payload), identified by `hash` (hex SHA-256, computed by
-- the program), with how many times it came and when it came last. Rows from
-- before have no hash and stay as they are.
ALTER TABLE dead_letters ADD COLUMN hash TEXT;
ALTER TABLE dead_letters ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE dead_letters ADD COLUMN last_seen_at TEXT;
UPDATE dead_letters SET last_seen_at = received_at;
CREATE UNIQUE INDEX dead_letters_hash ON dead_letters (hash);
