-- Version 12: a product's last ledger row takes later batches' movements
-- of the product while it is small (see docs/benchmarks.md, "Tenth pass").
--
-- On a catalogue of many products each batch moves most products once or
-- twice, and a row of its own per product and batch cost the row's
-- columns and a new entry in the key's index for one or two movements.
-- A batch now adds such movements to the product's last row
-- (stockroom_storage_postgres::ledger::add_movements), in front of the
-- entries it holds: the row's rewrite stays on its page and logs only the
-- new entries. The entries of every row are therefore stored newest first;
-- the rows stored before are turned around here.
UPDATE stock_ledger
SET entries = (SELECT json_agg(entry ORDER BY position DESC)::text
               FROM json_array_elements(entries::json) WITH ORDINALITY AS stored (entry, position))
WHERE json_array_length(entries::json) > 1;

-- Nine tenths of each new page are left for its rows to grow into, so
-- that a row's rewrite finds room beside it.
ALTER TABLE stock_ledger SET (fillfactor = 10);
