-- Stockroom's PostgreSQL schema, version 1: the same tables and invariants as
-- the SQLite backend's schema.sql. Every statement is idempotent, so running
-- it again on a database that already has it changes nothing. The CHECK
-- constraints restate the invariants so that a bug can fail a transaction but
-- never store an oversold state. Keys that are sorted or paged on use the "C"
-- collation so that they compare byte by byte, exactly as SQLite compares them.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS inventory (
    product_key  TEXT COLLATE "C" PRIMARY KEY,   -- lower-case name
    product_name TEXT NOT NULL,
    quantity     BIGINT NOT NULL,                -- on hand
    reserved     BIGINT NOT NULL,
    sold         BIGINT NOT NULL DEFAULT 0,
    received     BIGINT NOT NULL,
    CONSTRAINT inventory_quantity_not_negative CHECK (quantity >= 0),
    CONSTRAINT inventory_reserved_within_quantity CHECK (reserved >= 0 AND reserved <= quantity),
    CONSTRAINT inventory_sold_not_negative CHECK (sold >= 0),
    CONSTRAINT inventory_conservation CHECK (received = quantity + sold)
);

CREATE TABLE IF NOT EXISTS orders (
    id             TEXT COLLATE "C" PRIMARY KEY, -- UUIDv7, so ids sort by creation
    customer_id    TEXT COLLATE "C" NOT NULL,
    status         TEXT NOT NULL,
    reason         TEXT,
    payment_status TEXT NOT NULL,
    version        BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    CONSTRAINT orders_version_positive CHECK (version >= 1)
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at_ms);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, id);

CREATE TABLE IF NOT EXISTS order_items (
    order_id     TEXT COLLATE "C" NOT NULL,
    product_key  TEXT COLLATE "C" NOT NULL,
    product_name TEXT NOT NULL,
    quantity     BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_key),
    CONSTRAINT order_items_quantity_positive CHECK (quantity > 0)
);

CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT COLLATE "C" NOT NULL,
    version  BIGINT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    at_ms    BIGINT NOT NULL,
    PRIMARY KEY (order_id, version)
);

-- The result stays NULL while the request that claimed the key is still
-- running; a concurrent request with the same key waits on the primary key
-- until that transaction ends, so it only ever reads a filled result.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT,
    result_json   TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    order_id       TEXT NOT NULL,
    order_version  BIGINT NOT NULL,
    total_units    BIGINT NOT NULL,
    occurred_at_ms BIGINT NOT NULL
);

-- One row per event and consumer until the consumer acknowledges it.
CREATE TABLE IF NOT EXISTS deliveries (
    consumer        TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    leased_until_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, seq)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    consumer TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    at_ms    BIGINT NOT NULL,
    PRIMARY KEY (consumer, seq)
);

-- A consumer's effect and the id of the event that caused it are written in
-- one transaction: this row is what makes redelivery harmless.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_ms    BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
