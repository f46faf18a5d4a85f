-- Data rights and retention (issue 10; README "Data rights", "Retention").
--
-- `erasures`: the log of customers erased (`DELETE /v1/admin/customers/{id}`
-- or a `customer.erased` event). It keeps the shop's customer id (the shop
-- needs it to prove the erasure), when, who asked (`admin`, or the source
-- of the event: kafka, http, file) and how many rows of each table were
-- removed or anonymized; nothing else about the customer.
CREATE TABLE erasures (
    id          BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    erased_at   TIMESTAMPTZ NOT NULL,
    source      TEXT NOT NULL,
    event_id    TEXT,                        -- the customer.erased event, when one asked
    summary     JSON NOT NULL                -- rows removed or anonymized, by table
);
CREATE INDEX erasures_customer ON erasures (customer_id);

-- `outbox.opened`: a person opened or clicked the email, kept here when
-- retention purges its `email_activity` rows, so that the sunset rule reads
-- the same history after the purge as before. A constant default: adding
-- it rewrites no row.
ALTER TABLE outbox ADD COLUMN opened BOOLEAN NOT NULL DEFAULT false;
