-- Orders and the points ledger.
--
-- Invariant kept by every writer, in one transaction with the balance change:
--   users.point = sum(ADD.amount) - sum(DEDUCT.amount) >= 0

CREATE TABLE orders (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id),
    total_price   bigint      NOT NULL CHECK (total_price > 0),
    -- The payer's balance right after this order, returned in the order body.
    balance_after bigint      NOT NULL CHECK (balance_after >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- GET /orders: own orders, newest first, keyset-paginated on (created_at, id).
CREATE INDEX orders_user_created_idx ON orders (user_id, created_at DESC, id DESC);

CREATE TABLE order_items (
    id          uuid    PRIMARY KEY,
    order_id    uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    menu_id     uuid    NOT NULL REFERENCES menus (id),
    -- Snapshots taken when the order was placed: later menu edits change nothing here.
    menu_name   text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  bigint  NOT NULL CHECK (unit_price > 0),
    total_price bigint  NOT NULL CHECK (total_price = unit_price * quantity),
    -- The order's time, copied here so popular menus can read the partial
    -- hour at the window's old edge with an index-only scan.
    created_at  timestamptz NOT NULL,
    -- Duplicate menu ids are merged into one line before they get here.
    CONSTRAINT order_items_order_menu_key UNIQUE (order_id, menu_id)
);
CREATE INDEX order_items_menu_idx ON order_items (menu_id);
CREATE INDEX order_items_created_idx ON order_items (created_at) INCLUDE (menu_id, quantity);

CREATE TABLE point_transactions (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id),
    type          text        NOT NULL CHECK (type IN ('ADD', 'DEDUCT')),
    amount        bigint      NOT NULL CHECK (amount > 0),
    balance_after bigint      NOT NULL CHECK (balance_after >= 0),
    -- Set on the DEDUCT row that paid for an order.
    order_id      uuid        NULL REFERENCES orders (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT point_transactions_deduct_has_order CHECK ((type = 'DEDUCT') = (order_id IS NOT NULL))
);
-- History: newest first, keyset-paginated on (created_at, id).
CREATE INDEX point_transactions_user_created_idx ON point_transactions (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX point_transactions_order_idx ON point_transactions (order_id) WHERE order_id IS NOT NULL;
