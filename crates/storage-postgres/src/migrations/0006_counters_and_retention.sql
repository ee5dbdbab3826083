-- Version 6: orders per status are counted as they are written, and the
-- provider's charges and dead letters have indexes retention walks.
--
-- Every write moves these counters in the same transaction as its orders
-- (see stockroom_domain::rules::Changes::status_deltas), so a count reads a
-- few rows instead of walking the status index. Each status is spread over
-- shards (ORDER_COUNT_SHARDS in the code); a transaction adds to one shard
-- drawn at random, so concurrent batches of several instances rarely wait for
-- one another's counter rows, and a count sums the shards.
CREATE TABLE order_counts (
    status TEXT COLLATE "C" NOT NULL,
    shard  INTEGER NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (status, shard)
) WITH (fillfactor = 50);
-- The orders already stored, counted once.
INSERT INTO order_counts (status, shard, count)
SELECT status, 0, COUNT(*) FROM orders GROUP BY status;

CREATE INDEX provider_charges_by_age ON provider_charges (charged_at_ms);
CREATE INDEX outbox_dead_by_age ON outbox (dead_at_ms) WHERE dead_at_ms IS NOT NULL;
