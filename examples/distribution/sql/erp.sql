-- The ERP database of the distribution example: the tables the flows
-- marketplace-pull and stock-reconciliation read and write, with seed data.
-- Names are unqualified, so the file creates its tables in the first schema
-- of the search_path: the tests give every run a schema of its own
-- (ERP_DB_URL=...&search_path=<schema>). Running it twice is harmless.
--
--   psql "postgres://postgres@127.0.0.1:5432/test" -f examples/distribution/sql/erp.sql

-- Orders pulled from channels, waiting for the ERP's order import.
-- marketplace-pull upserts one row per order: a newer version of an order
-- replaces an older one (updates counts the versions applied); an older or
-- repeated one changes nothing.
CREATE TABLE IF NOT EXISTS erp_order_staging (
    order_ref   text PRIMARY KEY,                 -- MKP-5001
    channel     text NOT NULL,
    status      text NOT NULL,
    buyer_email text,
    total       numeric(12,2) NOT NULL,
    currency    char(3) NOT NULL,
    lines       jsonb NOT NULL,                   -- [{sku, item_code, qty, price}]
    channel_updated_at timestamptz NOT NULL,      -- the channel's updated_at of this version
    staged_at   timestamptz NOT NULL DEFAULT now(),
    updates     integer NOT NULL DEFAULT 1
);

-- Stock on hand as the ERP believes it, per item.
CREATE TABLE IF NOT EXISTS erp_stock (
    item_code text PRIMARY KEY,
    qty       integer NOT NULL CHECK (qty >= 0)
);

-- The exceptions report of stock-reconciliation: one row per item whose
-- ERP and WMS quantities differ, or that the WMS does not know, per run.
CREATE TABLE IF NOT EXISTS erp_stock_exceptions (
    run_id      text NOT NULL,                    -- the scheduled run's message id
    report_date date NOT NULL,
    item_code   text NOT NULL,
    erp_qty     integer NOT NULL,
    wms_qty     integer,                          -- NULL: unknown in the WMS
    difference  integer,                          -- wms_qty - erp_qty
    reason      text NOT NULL,                    -- quantity differs | unknown in WMS
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, item_code)
);

-- The simulated WMS holds 100234: 140, 100235: 80, 200117: 60, 300501: 40
-- and 400020: 200 on hand. Seeded differences: 100235 (ERP 75, WMS 80),
-- 300501 (ERP 44, WMS 40) and 999001, which the WMS does not know.
INSERT INTO erp_stock (item_code, qty) VALUES
    ('100234', 140),
    ('100235', 75),
    ('200117', 60),
    ('300501', 44),
    ('400020', 200),
    ('999001', 10)
ON CONFLICT (item_code) DO NOTHING;
