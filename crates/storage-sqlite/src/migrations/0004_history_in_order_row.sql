-- Version 4: an order's history lives in its own row (see
-- stockroom_storage::history), as its lines do: written with the insert and
-- the updates that happen anyway, read with the order, never joined.
ALTER TABLE orders ADD COLUMN history TEXT NOT NULL DEFAULT '[]';
UPDATE orders SET history = (
    SELECT json_group_array(json_array(version, status, reason, at_ms))
    FROM (SELECT version, status, reason, at_ms FROM order_history
          WHERE order_history.order_id = orders.id ORDER BY version)
)
WHERE id IN (SELECT order_id FROM order_history);
DROP TABLE order_history;
