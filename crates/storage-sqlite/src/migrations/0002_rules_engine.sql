-- Version 2: idempotency keys belong to their customer, and every list filter
-- has an index that serves it in id order.

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
