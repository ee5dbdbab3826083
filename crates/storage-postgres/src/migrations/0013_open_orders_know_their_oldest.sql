-- Version 13: an open-orders row keeps the creation time of the oldest
-- order it names (see stockroom_storage_postgres::open).
--
-- The expiry sweep read the order of every id the rows named, every second:
-- under a sale, the orders of the last few seconds, none of them near the
-- end of its time to live. It now reads only the rows whose oldest order
-- may be overdue. A row written before this version does not know its
-- oldest order (NULL) and is read by every sweep until a sweep rewrites it.
-- Adding a column without a default rewrites no row.
ALTER TABLE open_orders ADD COLUMN oldest_created_at_ms BIGINT;
