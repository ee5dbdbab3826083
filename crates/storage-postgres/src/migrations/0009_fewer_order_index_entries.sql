-- Version 9: fewer index entries per order: fulfilled orders leave the
-- status index, and outbox pages keep room for every entry's lease.
--
-- Settling an order changes its status, so the settlement's rewrite of the
-- row cannot stay heap-only and adds an entry to every index of the table
-- whose definition the row's new version belongs to. Every reader of the
-- status index asks for orders that are not fulfilled: the expiry sweep
-- (reserved), retention (rejected), and the listings by status other than
-- fulfilled. A listing of fulfilled orders walks the primary key instead,
-- in the id order it answers in, and skips the orders of other statuses
-- (in a running shop most orders are fulfilled, and retention removes
-- rejected ones). So the index keeps the other statuses only, and a
-- settlement writes two index entries instead of three.
DROP INDEX IF EXISTS orders_by_status;
CREATE INDEX orders_by_status ON orders (status, id) WHERE status <> 'fulfilled';

-- An outbox entry's lease gives it a token, so the leased version of the row
-- is longer than the one inserted, and the half of each page that version 8
-- leaves free no longer holds a new version of every row once the event's
-- id is no longer stored (the rows are shorter, so more share a page): some
-- leases then moved their row to another page, with a new entry in both of
-- the table's indexes. Three fifths of each new page are left free instead.
ALTER TABLE outbox SET (fillfactor = 40);
