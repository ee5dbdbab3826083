-- Version 2: idempotency keys belong to their customer, every list filter has
-- an index that serves it in id order, and the outbox carries its own leases.

-- One customer's key never collides with another's. Keys stored before carry
-- their customer in the answer they replay (an order document).
CREATE TABLE idempotency_keys_scoped (
    customer_id   TEXT NOT NULL,
    key           TEXT NOT NULL,
    fingerprint   TEXT,
    result_json   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (customer_id, key)
);
INSERT OR IGNORE INTO idempotency_keys_scoped
SELECT COALESCE(result_json ->> '$.order.customerId', ''), key, fingerprint, result_json,
       created_at_ms
FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_scoped RENAME TO idempotency_keys;

-- Listing by status pages in id order; the sweep walks reserved orders only.
DROP INDEX IF EXISTS orders_by_status;
CREATE INDEX orders_by_status ON orders (status, id);

-- The outbox holds each event until its consumer acknowledges it, with the
-- lease and the poison count on the event itself: one row written per event,
-- one update per lease, one delete per acknowledgement. A dead-lettered event
-- stays, marked, so that it can be listed and redriven.
CREATE TABLE outbox_leased (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    order_version   INTEGER NOT NULL,
    total_units     INTEGER NOT NULL,
    occurred_at_ms  INTEGER NOT NULL,
    consumer        TEXT NOT NULL,
    -- How often it was handed out, and how often a consumer refused it as
    -- poison (only that counts towards dead-lettering).
    deliveries      INTEGER NOT NULL DEFAULT 0,
    rejections      INTEGER NOT NULL DEFAULT 0,
    leased_until_ms INTEGER NOT NULL DEFAULT 0,
    lease_token     TEXT,
    dead_at_ms      INTEGER
);
INSERT INTO outbox_leased (seq, event_id, kind, order_id, order_version, total_units,
                           occurred_at_ms, consumer, deliveries)
SELECT outbox.seq, event_id, kind, order_id, order_version, total_units, occurred_at_ms,
       deliveries.consumer, deliveries.attempts
FROM deliveries JOIN outbox ON outbox.seq = deliveries.seq;
INSERT OR IGNORE INTO outbox_leased (seq, event_id, kind, order_id, order_version, total_units,
                                     occurred_at_ms, consumer, deliveries, rejections, dead_at_ms)
SELECT outbox.seq, event_id, kind, order_id, order_version, total_units, occurred_at_ms,
       dead_letters.consumer, dead_letters.attempts, dead_letters.attempts, dead_letters.at_ms
FROM dead_letters JOIN outbox ON outbox.seq = dead_letters.seq;
DROP TABLE deliveries;
DROP TABLE dead_letters;
DROP TABLE outbox;
ALTER TABLE outbox_leased RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (consumer, seq) WHERE dead_at_ms IS NULL;
CREATE INDEX outbox_dead ON outbox (consumer, seq) WHERE dead_at_ms IS NOT NULL;

-- An order's lines live in its row (see stockroom_storage::lines): written
-- once with it, read with it, never joined.
ALTER TABLE orders ADD COLUMN lines TEXT NOT NULL DEFAULT '[]';
UPDATE orders SET lines = (
    SELECT json_group_array(json_array(product_key, product_name, quantity))
    FROM (SELECT product_key, product_name, quantity FROM order_items
          WHERE order_id = orders.id ORDER BY product_key)
);
DROP TABLE order_items;

-- The simulated payment provider's ledger (payment-service's, through
-- data-service): one row per charge key, the first request's verdict.
CREATE TABLE provider_charges (
    charge_key    TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL,
    units         INTEGER NOT NULL,
    approved      INTEGER NOT NULL,
    requests      INTEGER NOT NULL,
    charged_at_ms INTEGER NOT NULL
);
CREATE INDEX provider_charges_by_order ON provider_charges (order_id);

-- Retention: the pruner deletes the oldest idempotency keys and processed-
-- event records first, through these indexes.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
CREATE INDEX processed_events_by_age ON processed_events (at_ms);
