-- Version 5: an idempotency key keeps the decision it replays, not a rendered
-- document (see stockroom_storage::keys): the order its first request created
-- and, when that order was rejected, what was short as
-- [[product name, requested, available], ...]. The answer is rebuilt from the
-- order, so a replay answers exactly as the first request was answered.
ALTER TABLE idempotency_keys ADD COLUMN order_id TEXT;
ALTER TABLE idempotency_keys ADD COLUMN shortages TEXT;
-- Keys stored before kept the whole answer document; its order's id and its
-- shortages are all a replay needs. Only answers that created an order were
-- ever stored.
UPDATE idempotency_keys
SET order_id = result_json::jsonb #>> '{order,id}',
    shortages = CASE WHEN result_json::jsonb ->> 'outcome' = 'rejected' THEN (
        SELECT COALESCE(jsonb_agg(jsonb_build_array(shortage ->> 'productName',
                                                    (shortage ->> 'requested')::bigint,
                                                    (shortage ->> 'available')::bigint)
                                  ORDER BY position), '[]'::jsonb)::text
        FROM jsonb_array_elements(result_json::jsonb -> 'shortages')
             WITH ORDINALITY AS listed (shortage, position))
    END;
DELETE FROM idempotency_keys WHERE order_id IS NULL;
ALTER TABLE idempotency_keys ALTER COLUMN order_id SET NOT NULL;
ALTER TABLE idempotency_keys DROP COLUMN result_json;
