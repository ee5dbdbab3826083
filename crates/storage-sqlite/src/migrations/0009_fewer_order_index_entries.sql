-- Version 9: fulfilled orders leave the status index (see PostgreSQL's
-- version 9). SQLite uses a partial index only for a query that states the
-- index's condition itself, so the queries that read it by status repeat
-- `status <> 'fulfilled'` (the listing, the expiry sweep, retention).
DROP INDEX IF EXISTS orders_by_status;
CREATE INDEX orders_by_status ON orders (status, id) WHERE status <> 'fulfilled';
