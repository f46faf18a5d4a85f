-- The admin API (`/v1/admin/`).
--
-- What operators did to the suppression list, with why and when: an entry
-- added by hand, or one removed (the reason it had is kept). Entries the
-- service adds itself (bounces, complaints) are not logged here: their
-- reason names the event.
CREATE TABLE IF NOT EXISTS suppression_log (
    id              BIGSERIAL PRIMARY KEY,
    email           TEXT NOT NULL,           -- as the list spells it
    action          TEXT NOT NULL,           -- added | removed
    reason          TEXT NOT NULL,           -- the operator's
    previous_reason TEXT,                    -- removed: the reason the entry had
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS suppression_log_email ON suppression_log (email, id);
