-- Turns orders, order_items and point_transactions into tables partitioned
-- by month on created_at, while the API keeps serving (docs/CAPACITY.md,
-- step 2, says when and why). Run it with psql against the service's database
-- as the owner of its tables:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -v cutover=2027-01-01 -v months=12 \
--        -f scripts/partition-by-month.sql
--
-- cutover: the first day of a month that has not begun yet (UTC). Every row
--   of today's tables is older, and stays where it is: each table becomes the
--   first partition of its partitioned successor, covering everything before
--   the cutover. Rows from the cutover on go to one partition per month.
-- months: how many monthly partitions to create from the cutover on. Add more
--   before they run out (the same \gexec at the end of this file, with a later
--   start): an order whose month has no partition fails (500) rather than
--   being stored somewhere unexpected.
--
-- Step 1 checks and indexes without blocking anyone: each statement takes at
-- most a SHARE UPDATE EXCLUSIVE lock, and the indexes are built
-- CONCURRENTLY. Step 2 is one short transaction: it renames, creates and
-- attaches, reading no table (the checks and indexes of step 1 let PostgreSQL
-- skip the scans), so its ACCESS EXCLUSIVE locks last milliseconds; with
-- lock_timeout it gives up rather than queue behind a long transaction (run it
-- again). If anything fails, nothing of step 2 is applied; step 1 may be run
-- again as it is.
--
-- What changes for the application: nothing it can see. The primary keys
-- become (id, created_at). The foreign keys from order_items and
-- point_transactions to orders are dropped: PostgreSQL 15 cannot attach a
-- partition under a foreign key without checking every row of it while all
-- three tables are locked, which is what step 2 must not do. What they
-- guarded holds by construction: an order, its lines and its DEDUCT row are
-- written by one transaction (crates/postgres/src/orders.rs), and orders are
-- never deleted (a month is detached whole, its lines and ledger rows first).
-- The foreign keys to users and menus stay (the partitions already have them).

\set ON_ERROR_STOP 1
SET lock_timeout = '5s';
SET TIME ZONE 'UTC';

-- Step 1: every existing row is before the cutover, checked once ...
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_before_cutover;
ALTER TABLE orders ADD CONSTRAINT orders_before_cutover CHECK (created_at < :'cutover') NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_before_cutover;
ALTER TABLE order_items DROP CONSTRAINT IF EXISTS order_items_before_cutover;
ALTER TABLE order_items ADD CONSTRAINT order_items_before_cutover CHECK (created_at < :'cutover') NOT VALID;
ALTER TABLE order_items VALIDATE CONSTRAINT order_items_before_cutover;
ALTER TABLE point_transactions DROP CONSTRAINT IF EXISTS point_transactions_before_cutover;
ALTER TABLE point_transactions ADD CONSTRAINT point_transactions_before_cutover
    CHECK (created_at < :'cutover') NOT VALID;
ALTER TABLE point_transactions VALIDATE CONSTRAINT point_transactions_before_cutover;

-- ... and the unique indexes the partitioned tables' keys need, built without
-- blocking writes.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_id_created_key ON orders (id, created_at);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS order_items_id_created_key ON order_items (id, created_at);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS order_items_order_menu_created_idx
    ON order_items (order_id, menu_id, created_at);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS point_transactions_id_created_key
    ON point_transactions (id, created_at);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS point_transactions_order_created_key
    ON point_transactions (order_id, created_at) WHERE order_id IS NOT NULL;

-- Step 2: one short transaction.
BEGIN;
ALTER TABLE point_transactions DROP CONSTRAINT point_transactions_order_id_fkey;
ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
-- A partition has its parent's primary key, (id, created_at): the unique
-- indexes of step 1 become the constraints (no scan); ids stay unique as they
-- are UUIDv7s.
ALTER TABLE orders DROP CONSTRAINT orders_pkey,
    ADD CONSTRAINT orders_id_created_key PRIMARY KEY USING INDEX orders_id_created_key;
ALTER TABLE order_items DROP CONSTRAINT order_items_pkey,
    ADD CONSTRAINT order_items_id_created_key PRIMARY KEY USING INDEX order_items_id_created_key,
    ADD CONSTRAINT order_items_order_menu_created_idx UNIQUE USING INDEX order_items_order_menu_created_idx;
ALTER TABLE point_transactions DROP CONSTRAINT point_transactions_pkey,
    ADD CONSTRAINT point_transactions_id_created_key PRIMARY KEY USING INDEX point_transactions_id_created_key;

ALTER TABLE orders RENAME TO orders_before_cutover;
CREATE TABLE orders (
    id            uuid        NOT NULL,
    user_id       uuid        NOT NULL CONSTRAINT orders_user_id_fkey REFERENCES users (id),
    total_price   bigint      NOT NULL CONSTRAINT orders_total_price_check CHECK (total_price > 0),
    balance_after bigint      NOT NULL CONSTRAINT orders_balance_after_check CHECK (balance_after >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_id_created_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX orders_user_created_part_idx ON orders (user_id, created_at DESC, id DESC);
ALTER TABLE orders ATTACH PARTITION orders_before_cutover FOR VALUES FROM (MINVALUE) TO (:'cutover');

ALTER TABLE order_items RENAME TO order_items_before_cutover;
CREATE TABLE order_items (
    id          uuid        NOT NULL,
    order_id    uuid        NOT NULL,
    menu_id     uuid        NOT NULL CONSTRAINT order_items_menu_id_fkey REFERENCES menus (id),
    menu_name   text        NOT NULL,
    quantity    integer     NOT NULL CONSTRAINT order_items_quantity_check CHECK (quantity > 0),
    unit_price  bigint      NOT NULL CONSTRAINT order_items_unit_price_check CHECK (unit_price > 0),
    total_price bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    CONSTRAINT order_items_check CHECK (total_price = unit_price * quantity),
    CONSTRAINT order_items_id_created_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT order_items_order_menu_created_key UNIQUE (order_id, menu_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX order_items_menu_part_idx ON order_items (menu_id);
CREATE INDEX order_items_created_part_idx ON order_items (created_at) INCLUDE (menu_id, quantity);
ALTER TABLE order_items ATTACH PARTITION order_items_before_cutover FOR VALUES FROM (MINVALUE) TO (:'cutover');

ALTER TABLE point_transactions RENAME TO point_transactions_before_cutover;
CREATE TABLE point_transactions (
    id            uuid        NOT NULL,
    user_id       uuid        NOT NULL CONSTRAINT point_transactions_user_id_fkey REFERENCES users (id),
    type          text        NOT NULL CONSTRAINT point_transactions_type_check CHECK (type IN ('ADD', 'DEDUCT')),
    amount        bigint      NOT NULL CONSTRAINT point_transactions_amount_check CHECK (amount > 0),
    balance_after bigint      NOT NULL CONSTRAINT point_transactions_balance_after_check CHECK (balance_after >= 0),
    order_id      uuid        NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT point_transactions_id_created_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT point_transactions_deduct_has_order CHECK ((type = 'DEDUCT') = (order_id IS NOT NULL))
) PARTITION BY RANGE (created_at);
CREATE INDEX point_transactions_user_created_part_idx ON point_transactions (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX point_transactions_order_part_idx ON point_transactions (order_id, created_at)
    WHERE order_id IS NOT NULL;
ALTER TABLE point_transactions ATTACH PARTITION point_transactions_before_cutover
    FOR VALUES FROM (MINVALUE) TO (:'cutover');

-- The months from the cutover on, one partition of each table per month.
SELECT format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
              t || '_' || to_char(m, 'YYYY_MM'), t, m, m + interval '1 month')
FROM unnest(ARRAY['orders', 'order_items', 'point_transactions']) AS t,
     generate_series(:'cutover'::timestamptz, :'cutover'::timestamptz + (:'months' - 1) * interval '1 month',
                     interval '1 month') AS m
ORDER BY m, array_position(ARRAY['orders', 'order_items', 'point_transactions'], t)
\gexec
COMMIT;
