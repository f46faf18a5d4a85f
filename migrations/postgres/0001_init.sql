-- aftercare schema (PostgreSQL). Times are timestamptz; documents are json (stored as written: they are read back whole, never searched inside).

CREATE TABLE events (
    id          TEXT PRIMARY KEY,            -- the shop's event id: dedup and audit
    type        TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    source      TEXT NOT NULL,               -- kafka | http | file
    payload     JSON NOT NULL
);
CREATE INDEX events_customer ON events (customer_id, occurred_at);

CREATE TABLE customers (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    profile    JSON NOT NULL,               -- latest details, consent, suppression
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE enrollments (
    key         TEXT PRIMARY KEY,            -- sequence/customer[/order|/@origin]
    sequence    TEXT NOT NULL,
    version     TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    order_id    TEXT,
    status      TEXT NOT NULL,               -- active | completed | exited
    step        TEXT,
    wake_at     TIMESTAMPTZ,
    lease_until TIMESTAMPTZ,
    state       JSON NOT NULL,              -- the whole enrollment, context included
    started_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX enrollments_due ON enrollments (wake_at) WHERE status = 'active';
CREATE INDEX enrollments_customer ON enrollments (customer_id);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,    -- enrollment key # step id; also the Message-ID
    customer_id     TEXT NOT NULL,
    sequence        TEXT NOT NULL,
    step            TEXT NOT NULL,
    template        TEXT NOT NULL,
    category        TEXT NOT NULL,
    status          TEXT NOT NULL,           -- pending | sending | sent | skipped | failed
    attempts        BIGINT NOT NULL DEFAULT 0,
    retries         BIGINT NOT NULL DEFAULT 0,   -- transient transport failures so far
    not_before      TIMESTAMPTZ NOT NULL,
    lease_until     TIMESTAMPTZ,
    context         JSON NOT NULL,
    message_id      TEXT,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_due ON outbox (not_before) WHERE status = 'pending';
CREATE INDEX outbox_customer ON outbox (customer_id, status);

CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    outbox_id       BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    attempt         BIGINT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    outcome         TEXT NOT NULL,           -- sent | deferred | skipped | retry | failed
    detail          TEXT NOT NULL,           -- transport reply, policy reason or error
    message_id      TEXT
);
CREATE INDEX deliveries_outbox ON deliveries (outbox_id);
CREATE INDEX deliveries_at ON deliveries (at);

CREATE TABLE suppressions (
    email      TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE email_activity (
    id              BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    kind            TEXT NOT NULL,           -- open | click
    url             TEXT,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX email_activity_key ON email_activity (idempotency_key, kind);

CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT NOT NULL,               -- kafka | http | file
    reason      TEXT NOT NULL,
    payload     TEXT NOT NULL,               -- as received, even when not JSON
    origin      TEXT,                        -- topic/partition/offset, line number, remote address
    received_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
