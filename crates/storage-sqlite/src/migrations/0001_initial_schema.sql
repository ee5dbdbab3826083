-- Stockroom's SQLite schema, version 1. Every statement is idempotent, because
-- databases made before versioned migrations have these tables already. The
-- CHECK constraints restate the invariants so that a bug can fail a
-- transaction but never store an oversold state.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS inventory (
    product_key  TEXT PRIMARY KEY,          -- lower-case name
    product_name TEXT NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity >= 0),       -- on hand
    reserved     INTEGER NOT NULL CHECK (reserved >= 0 AND reserved <= quantity),
    sold         INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0),
    received     INTEGER NOT NULL,
    CHECK (received = quantity + sold)
);

CREATE TABLE IF NOT EXISTS orders (
    id             TEXT PRIMARY KEY,        -- UUIDv7, so ids sort by creation
    customer_id    TEXT NOT NULL,
    status         TEXT NOT NULL,
    reason         TEXT,
    payment_status TEXT NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at_ms);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, id);

CREATE TABLE IF NOT EXISTS order_items (
    order_id     TEXT NOT NULL,
    product_key  TEXT NOT NULL,
    product_name TEXT NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_key)
);

CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL,
    version  INTEGER NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (order_id, version)
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT,
    result_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    order_id       TEXT NOT NULL,
    order_version  INTEGER NOT NULL,
    total_units    INTEGER NOT NULL,
    occurred_at_ms INTEGER NOT NULL
);

-- One row per event and consumer until the consumer acknowledges it.
CREATE TABLE IF NOT EXISTS deliveries (
    consumer        TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    leased_until_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, seq)
);
-- Poison deliveries (handed out MAX_DELIVERY_ATTEMPTS = 10 times), found on
-- every lease without scanning the pending ones.
CREATE INDEX IF NOT EXISTS deliveries_poison ON deliveries (consumer) WHERE attempts >= 10;

CREATE TABLE IF NOT EXISTS dead_letters (
    consumer TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
);

-- A consumer's effect and the id of the event that caused it are written in
-- one transaction: this row is what makes redelivery harmless.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
