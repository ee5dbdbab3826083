-- Version 6: orders per status are counted as they are written, and the
-- provider's charges and dead letters have indexes retention walks.
--
-- Every write moves these counters in the same transaction as its orders
-- (see stockroom_domain::rules::Changes::status_deltas), so a count reads a
-- few rows instead of walking the status index. SQLite has one writer, so one
-- row per status (shard 0) is enough; PostgreSQL spreads each status over
-- shards so that concurrent batches rarely wait for one another.
CREATE TABLE order_counts (
    status TEXT NOT NULL,
    shard  INTEGER NOT NULL DEFAULT 0,
    count  INTEGER NOT NULL,
    PRIMARY KEY (status, shard)
);
-- The orders already stored, counted once.
INSERT INTO order_counts (status, shard, count)
SELECT status, 0, COUNT(*) FROM orders GROUP BY status;

CREATE INDEX provider_charges_by_age ON provider_charges (charged_at_ms);
CREATE INDEX outbox_dead_by_age ON outbox (dead_at_ms) WHERE dead_at_ms IS NOT NULL;
