-- Version 2: idempotency keys belong to their customer, and every list filter
-- has an index that serves it in id order.

-- One customer's key never collides with another's. Keys stored before carry
-- their customer in the answer they replay (an order document); a key whose
-- request never finished has no answer and is dropped.
CREATE TABLE IF NOT EXISTS idempotency_keys_scoped (
    customer_id   TEXT COLLATE "C" NOT NULL,
    key           TEXT COLLATE "C" NOT NULL,
    fingerprint   TEXT,
    result_json   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (customer_id, key)
);
INSERT INTO idempotency_keys_scoped
SELECT COALESCE(result_json::jsonb #>> '{order,customerId}', ''), key, fingerprint, result_json,
       created_at_ms
FROM idempotency_keys
WHERE result_json IS NOT NULL
ON CONFLICT DO NOTHING;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_scoped RENAME TO idempotency_keys;

-- Listing by status pages in id order; the sweep walks reserved orders only.
DROP INDEX IF EXISTS orders_by_status;
CREATE INDEX orders_by_status ON orders (status, id);
