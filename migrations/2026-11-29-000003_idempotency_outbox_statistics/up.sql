-- Idempotency records, the order-event outbox, and popular-menu statistics.

-- One row per (user, endpoint, key), inserted first in the same transaction
-- as the effect it guards, so a concurrent duplicate waits on the primary key
-- and then replays the stored outcome. Business rejections (4xx) are stored as
-- well; failures (5xx) roll back with everything else so the client may retry.
-- `outcome` is the use case's serialised result, from which HTTP renders the
-- same status and body on every replay.
CREATE TABLE idempotency_keys (
    user_id     uuid        NOT NULL REFERENCES users (id),
    scope       text        NOT NULL CHECK (scope IN ('points.charge', 'orders.place')),
    key         text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the canonical request.
    fingerprint bytea       NOT NULL CHECK (octet_length(fingerprint) = 32),
    outcome     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, scope, key)
);

-- The periodic purge of records past their retention.
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Transactional outbox: written by the order's transaction, delivered at least
-- once by the relay in every API instance. A claim is a lease
-- (`locked_until`), so the claims of a killed instance expire and are retried.
CREATE TABLE outbox_events (
    id              uuid        PRIMARY KEY, -- the eventId sent to the collector
    event_type      text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz NULL,
    locked_by       text        NULL,
    last_error      text        NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz NULL
);
-- The relay's claim query: due, pending events, oldest first.
CREATE INDEX outbox_events_due_idx ON outbox_events (next_attempt_at) WHERE status = 'PENDING';
-- Purge of delivered rows past their retention.
CREATE INDEX outbox_events_delivered_idx ON outbox_events (delivered_at) WHERE status = 'DELIVERED';
CREATE INDEX outbox_events_dead_idx ON outbox_events (created_at) WHERE status = 'DEAD';

-- Popular menus: cups and orders per menu per hour, updated in the order's own
-- transaction. Each (hour, menu) is split into shards chosen per order, so many
-- concurrent orders of one menu do not queue on one row; reads sum the shards.
CREATE TABLE menu_sales_hourly (
    bucket_start timestamptz NOT NULL CHECK (date_trunc('hour', bucket_start) = bucket_start),
    menu_id      uuid        NOT NULL REFERENCES menus (id),
    shard        smallint    NOT NULL CHECK (shard BETWEEN 0 AND 63),
    quantity     bigint      NOT NULL CHECK (quantity >= 0),
    order_count  bigint      NOT NULL CHECK (order_count >= 0),
    PRIMARY KEY (bucket_start, menu_id, shard)
);
