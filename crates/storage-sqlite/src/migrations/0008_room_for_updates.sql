-- Version 8: no query reads the provider's charges by order (the ledger's
-- statistics scan the table, retention walks the age index), so its index
-- only cost an entry per charge. (PostgreSQL's version 8 also leaves room
-- on its pages for updates; SQLite rewrites rows in place.)
DROP INDEX IF EXISTS provider_charges_by_order;
