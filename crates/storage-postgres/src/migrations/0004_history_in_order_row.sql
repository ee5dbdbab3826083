-- Version 4: an order's history lives in its own row (see
-- stockroom_storage::history), as its lines do: written with the insert and
-- the updates that happen anyway, read with the order, never joined.
ALTER TABLE orders ADD COLUMN history TEXT NOT NULL DEFAULT '[]';
UPDATE orders SET history = grouped.history
FROM (
    SELECT order_id,
           json_agg(json_build_array(version, status, reason, at_ms) ORDER BY version)::text
               AS history
    FROM order_history GROUP BY order_id
) AS grouped
WHERE orders.id = grouped.order_id;
DROP TABLE order_history;
