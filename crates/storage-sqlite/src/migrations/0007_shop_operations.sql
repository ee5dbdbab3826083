-- Version 7: what a shop runs its stock with.
--
-- A product carries what its operator set (a purchase limit per customer, a
-- low-stock threshold) and how many movements its ledger holds.
ALTER TABLE inventory ADD COLUMN max_per_customer INTEGER CHECK (max_per_customer >= 1);
ALTER TABLE inventory ADD COLUMN low_stock_threshold INTEGER CHECK (low_stock_threshold >= 0);
ALTER TABLE inventory ADD COLUMN movements INTEGER NOT NULL DEFAULT 0 CHECK (movements >= 0);

-- The ledger: every change of a product's figures, one row per product and
-- batch (see stockroom_storage::ledger). Products stored before it begin
-- with one opening movement holding their figures, so that replaying the
-- ledger gives the figures for every product.
CREATE TABLE stock_ledger (
    product_key TEXT NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    entries     TEXT NOT NULL,
    PRIMARY KEY (product_key, first_seq),
    CHECK (first_seq >= 1 AND last_seq >= first_seq)
);
INSERT INTO stock_ledger (product_key, first_seq, last_seq, entries)
SELECT product_key, 1, 1,
       json_array(json_array('opening', NULL, NULL, NULL, quantity, reserved, sold,
                             CAST(unixepoch('subsec') * 1000 AS INTEGER), NULL))
FROM inventory;
UPDATE inventory SET movements = 1;

-- What each customer holds of each limited product, in reserved and
-- fulfilled orders, kept by the batches that reserve and release it.
CREATE TABLE holdings (
    customer_id TEXT NOT NULL,
    product_key TEXT NOT NULL,
    units       INTEGER NOT NULL CHECK (units >= 0),
    PRIMARY KEY (customer_id, product_key)
);
CREATE INDEX holdings_by_product ON holdings (product_key);

-- Operators' idempotency keys, with the adjustment each first answered.
CREATE TABLE operator_keys (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT,
    product_key   TEXT NOT NULL,
    answer        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX operator_keys_by_age ON operator_keys (created_at_ms);

-- A customer may keep an unpaid reservation longer.
ALTER TABLE orders ADD COLUMN extended_until_ms INTEGER;

-- What a notice for another system says, with its outbox entry.
ALTER TABLE outbox ADD COLUMN notice TEXT;
