-- Time-driven triggers (sequences with `trigger: {date: ...}` or a
-- `schedule` in each customer's time zone): when each fires next for each
-- customer. Set as the customer's facts change, indexed by time, so the
-- scheduler wakes only the customers whose date has come.
CREATE TABLE IF NOT EXISTS timers (
    customer_id TEXT NOT NULL,
    sequence    TEXT NOT NULL,
    fire_at     TEXT NOT NULL,
    occurrence  TEXT NOT NULL,               -- date:2027 | schedule:<time>: the enrollment's origin
    PRIMARY KEY (customer_id, sequence)
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (fire_at);

-- When the last email to the customer was sent (the fact
-- `customer.last_email_at`): the sender sets it, ingest reads it.
ALTER TABLE customers ADD COLUMN last_email_at TEXT;
-- Customers who were sent mail before: the last time, from the outbox.
UPDATE customers SET last_email_at = (
    SELECT MAX(sent_at) FROM outbox
    WHERE outbox.customer_id = customers.id AND outbox.status = 'sent'
);
