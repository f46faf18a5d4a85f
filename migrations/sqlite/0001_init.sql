-- aftercare schema (SQLite). Times are RFC 3339 UTC text (they sort as text); documents are JSON text.

CREATE TABLE events (
    id          TEXT PRIMARY KEY,            -- the shop's event id: dedup and audit
    type        TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    source      TEXT NOT NULL,               -- kafka | http | file
    payload     TEXT NOT NULL
);
CREATE INDEX events_customer ON events (customer_id, occurred_at);

CREATE TABLE customers (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    profile    TEXT NOT NULL,               -- latest details, consent, suppression
    updated_at TEXT NOT NULL
);

CREATE TABLE enrollments (
    key         TEXT PRIMARY KEY,            -- sequence/customer[/order|/@origin]
    sequence    TEXT NOT NULL,
    version     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    order_id    TEXT,
    status      TEXT NOT NULL,               -- active | completed | exited
    step        TEXT,
    wake_at     TEXT,
    lease_until TEXT,
    state       TEXT NOT NULL,              -- the whole enrollment, context included
    started_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX enrollments_due ON enrollments (wake_at) WHERE status = 'active';
CREATE INDEX enrollments_customer ON enrollments (customer_id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,    -- enrollment key # step id; also the Message-ID
    customer_id     TEXT NOT NULL,
    sequence        TEXT NOT NULL,
    step            TEXT NOT NULL,
    template        TEXT NOT NULL,
    category        TEXT NOT NULL,
    status          TEXT NOT NULL,           -- pending | sending | sent | skipped | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,   -- transient transport failures so far
    not_before      TEXT NOT NULL,
    lease_until     TEXT,
    context         TEXT NOT NULL,
    message_id      TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (not_before) WHERE status = 'pending';
CREATE INDEX outbox_customer ON outbox (customer_id, status);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id       INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    at              TEXT NOT NULL,
    outcome         TEXT NOT NULL,           -- sent | deferred | skipped | retry | failed
    detail          TEXT NOT NULL,           -- transport reply, policy reason or error
    message_id      TEXT
);
CREATE INDEX deliveries_outbox ON deliveries (outbox_id);
CREATE INDEX deliveries_at ON deliveries (at);

CREATE TABLE suppressions (
    email      TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE email_activity (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    kind            TEXT NOT NULL,           -- open | click
    url             TEXT,
    at              TEXT NOT NULL
);
CREATE INDEX email_activity_key ON email_activity (idempotency_key, kind);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,               -- kafka | http | file
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,               -- as received, even when not JSON
    origin      TEXT,                        -- topic/partition/offset, line number, remote address
    received_at TEXT NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
