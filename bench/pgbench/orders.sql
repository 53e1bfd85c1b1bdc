-- One `POST /orders` of one Americano (as bench/wrk/load.lua sends it): its
-- statements (PgOrderStore::place_order in crates/postgres/src/orders.rs and
-- idempotency::run in idempotency.rs), each in a round trip of its own: the
-- database's ceiling for the endpoint sent statement by statement (the
-- service pipelines them into two round trips: BEGIN, and the balance locked with the key
-- claimed, the menus and the clock in one statement; then the writes with the stored outcome,
-- and COMMIT). Its one-round-trip twin is order_one_trip.sql; the helpers and
-- users come from setup.sql. When the service's writes change, these change
-- with them.
-- Variables (-D): users, clients (pgbench -c), run (unique per run). Each
-- client has users of its own (client_id + 1, + clients, ...), like each
-- wrk thread, so no two transactions queue on one balance.
\set u 1 + :client_id + :clients * random(0, :users / :clients - 1)
\set k random(1, 1000000000000)
\set q 1
BEGIN;
WITH balance AS MATERIALIZED (SELECT point FROM users WHERE id = bench_user(:u) FOR NO KEY UPDATE), claim AS (INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) SELECT bench_user(:u), 'orders.place', (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text, sha256('orders.place Americano x1'::bytea), 'null'::jsonb FROM balance ON CONFLICT DO NOTHING RETURNING true) SELECT balance.point AS before, coalesce(NULL::timestamptz, clock_timestamp()) AS at, bench_uuid7() AS order_id, (m.ids)[1] AS menu_id, (m.names)[1] AS menu_name, (m.prices)[1] AS price, EXISTS (SELECT FROM claim) AS claimed FROM (SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(name), '{}') AS names, coalesce(array_agg(price), '{}') AS prices FROM menus WHERE id = ANY (ARRAY[bench_menu(1)])) m LEFT JOIN balance ON true \gset
\set total :price * :q
\set balance :before - :total
WITH pay AS (UPDATE users SET point = point - (:total)::bigint, updated_at = :at WHERE id = bench_user(:u)), placed AS (INSERT INTO orders (id, user_id, total_price, balance_after, created_at) VALUES (:order_id, bench_user(:u), :total, :balance, :at)), items AS (INSERT INTO order_items (id, order_id, menu_id, menu_name, quantity, unit_price, total_price, created_at) VALUES (bench_uuid7(), :order_id, :menu_id, :menu_name, :q, :price, :total, :at)), ledger AS (INSERT INTO point_transactions (id, user_id, type, amount, balance_after, order_id, created_at) VALUES (bench_uuid7(), bench_user(:u), 'DEDUCT', :total, :balance, :order_id, :at)), sales AS (INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count) VALUES (bench_hour((:at)::timestamptz), :menu_id, bench_shard((:order_id)::uuid), :q, 1) ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE SET quantity = menu_sales_hourly.quantity + excluded.quantity, order_count = menu_sales_hourly.order_count + excluded.order_count), queued AS (INSERT INTO outbox_events (id, event_type, aggregate_id, payload) SELECT e, 'ORDER_PLACED', (:order_id)::uuid, bench_order_event(e, (:order_id)::uuid, bench_user(:u), (:menu_id)::uuid, (:q)::int, (:total)::bigint, (:total)::bigint, (:at)::timestamptz) FROM bench_uuid7() AS e) UPDATE idempotency_keys SET outcome = bench_order_outcome((:order_id)::uuid, bench_user(:u), (:menu_id)::uuid, (:menu_name)::text, (:q)::int, (:price)::bigint, (:total)::bigint, (:balance)::bigint, (:at)::timestamptz) WHERE user_id = bench_user(:u) AND scope = 'orders.place' AND key = (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text;
COMMIT;
