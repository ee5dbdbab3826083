-- Version 5: an idempotency key keeps the decision it replays, not a rendered
-- document (see stockroom_storage::keys): the order its first request created
-- and, when that order was rejected, what was short as
-- [[product name, requested, available], ...]. The answer is rebuilt from the
-- order, so a replay answers exactly as the first request was answered.
CREATE TABLE idempotency_keys_v5 (
    customer_id   TEXT NOT NULL,
    key           TEXT NOT NULL,
    fingerprint   TEXT,
    order_id      TEXT NOT NULL,
    shortages     TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (customer_id, key)
);
-- Keys stored before kept the whole answer document; its order's id and its
-- shortages are all a replay needs. Only answers that created an order were
-- ever stored.
INSERT INTO idempotency_keys_v5 (customer_id, key, fingerprint, order_id, shortages,
                                 created_at_ms)
SELECT customer_id, key, fingerprint, result_json ->> '$.order.id',
       CASE WHEN result_json ->> '$.outcome' = 'rejected' THEN (
           SELECT json_group_array(json_array(shortage.value ->> '$.productName',
                                              shortage.value ->> '$.requested',
                                              shortage.value ->> '$.available'))
           FROM json_each(result_json, '$.shortages') AS shortage)
       END,
       created_at_ms
FROM idempotency_keys
WHERE result_json ->> '$.order.id' IS NOT NULL;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_v5 RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
