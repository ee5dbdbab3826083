-- Version 10: the outbox keeps a batch's events for one consumer in one row
-- (see stockroom_storage::outbox_rows): a batch is inserted, leased and
-- acknowledged as one row instead of a row per event, so the writer makes a
-- few row changes a batch where it made three an event. An event's delivery
-- id is its row's number times 1,024 plus its place in the row: every event
-- stored before becomes the only event of its row, with its old id as the
-- row's number (a lease held across the upgrade no longer proves itself and
-- its events are handed out again when it ends; a dead letter is redriven by
-- its new id).
CREATE TABLE outbox_rows (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer    TEXT NOT NULL,
    events      TEXT NOT NULL,
    states      TEXT NOT NULL,
    live        INTEGER NOT NULL CHECK (live >= 0),
    due_at_ms   INTEGER NOT NULL,
    first_at_ms INTEGER,
    dead_at_ms  INTEGER
);

INSERT INTO outbox_rows (seq, consumer, events, states, live, due_at_ms, first_at_ms, dead_at_ms)
SELECT seq, consumer,
       json_array(json_array(kind, order_id, order_version, total_units, occurred_at_ms,
                             trace_parent, notice, NULLIF(event_id, ''))),
       json_array(json_array(1, deliveries, rejections, lease_token,
                             CASE WHEN lease_token IS NULL THEN 0 ELSE leased_until_ms END,
                             dead_at_ms)),
       CASE WHEN dead_at_ms IS NULL THEN 1 ELSE 0 END,
       CASE WHEN dead_at_ms IS NULL AND lease_token IS NOT NULL THEN leased_until_ms ELSE 0 END,
       CASE WHEN dead_at_ms IS NULL THEN occurred_at_ms END,
       dead_at_ms
FROM outbox;

-- New rows continue after every event stored before, acknowledged ones
-- included.
DELETE FROM sqlite_sequence WHERE name = 'outbox_rows';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'outbox_rows', last FROM (
    SELECT MAX(seq) AS last FROM (
        SELECT seq FROM sqlite_sequence WHERE name = 'outbox'
        UNION ALL SELECT MAX(seq) FROM outbox_rows))
WHERE last IS NOT NULL;

DROP TABLE outbox;
ALTER TABLE outbox_rows RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (consumer, seq) WHERE dead_at_ms IS NULL;
CREATE INDEX outbox_dead ON outbox (consumer, seq) WHERE dead_at_ms IS NOT NULL;
CREATE INDEX outbox_dead_by_age ON outbox (dead_at_ms) WHERE dead_at_ms IS NOT NULL;
