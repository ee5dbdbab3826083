-- Version 14: the values PostgreSQL compresses as a sale writes them are
-- compressed with LZ4 instead of PostgreSQL's own pglz.
--
-- An outbox row holds up to 128 events as one JSON text, and an open-orders
-- row the ids of a batch's reservations, each several kilobytes, which
-- PostgreSQL compresses when it inserts the row. With pglz that was about
-- 1 % of the machine's CPU on the cold catalogue (docs/benchmarks.md,
-- fifteenth pass); LZ4 compresses the same rows in a tenth of the time, to
-- about the same size (the write-ahead log an order makes did not move).
-- Only values written from now on are compressed with LZ4; a row written
-- before keeps its pglz value, which PostgreSQL still reads. A server older
-- than PostgreSQL 14 (no per-column compression) or built without LZ4 keeps
-- pglz: the columns work the same either way. The statements are executed as
-- text so that an older server, which cannot parse them, never sees them.
DO $$
BEGIN
    IF current_setting('server_version_num')::integer >= 140000 THEN
        EXECUTE 'ALTER TABLE outbox ALTER COLUMN events SET COMPRESSION lz4';
        EXECUTE 'ALTER TABLE open_orders ALTER COLUMN ids SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no LZ4: these values stay compressed with pglz';
END
$$;
