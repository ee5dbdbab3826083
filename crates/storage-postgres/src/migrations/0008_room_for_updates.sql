-- Version 8: fewer index entries per order (see docs/benchmarks.md, "What
-- each change bought").
--
-- An order is rewritten when it is paid and when it is settled, and an
-- outbox entry when it is leased. An update stays on its page without a new
-- entry in every index (a heap-only update) only when the page has room for
-- the row's new version; at fillfactor 80 an order's or an entry's page was
-- full by the time its rows were rewritten, so most updates moved rows and
-- added an entry to each of their indexes. Half of each new page is now left
-- for those rewrites. Pages written before keep what they had; new ones
-- follow.
ALTER TABLE orders SET (fillfactor = 50);
ALTER TABLE outbox SET (fillfactor = 50);

-- No query reads the provider's charges by order (the ledger's statistics
-- scan the table, retention walks the age index), so its index only cost
-- an entry per charge.
DROP INDEX IF EXISTS provider_charges_by_order;
