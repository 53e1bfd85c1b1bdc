-- The SQL one `POST /orders` runs (crates/postgres/src/orders.rs and
-- idempotency.rs), statement for statement, as a pgbench custom script: the
-- database's own ceiling for the endpoint. Users come from pgbench/setup.sql;
-- ids are time-ordered like the service's UUIDv7 (bench_uuid7()).
\set u random(1, :users)
\set m random(1, 9)
\set shard random(0, 15)
BEGIN;
SET LOCAL lock_timeout = 5000;
INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome)
  VALUES (bench_user(:u), 'orders.place', bench_uuid7()::text, sha256(bench_uuid7()::text::bytea), 'null')
  ON CONFLICT DO NOTHING RETURNING key AS idem_key \gset
SET LOCAL lock_timeout TO DEFAULT;
SELECT id, name, price FROM menus WHERE id = ANY(ARRAY[bench_menu(:m)]);
UPDATE users SET point = point - 4000, updated_at = now()
  WHERE id = bench_user(:u) AND point >= 4000 RETURNING point AS balance \gset
INSERT INTO orders (id, user_id, total_price, balance_after, created_at)
  VALUES (bench_uuid7(), bench_user(:u), 4000, (:balance)::bigint, now()) RETURNING id AS order_id \gset
INSERT INTO order_items (id, order_id, menu_id, menu_name, quantity, unit_price, total_price, created_at)
  VALUES (bench_uuid7(), (:order_id)::uuid, bench_menu(:m), 'Americano', 1, 4000, 4000, now());
INSERT INTO point_transactions (id, user_id, type, amount, balance_after, order_id)
  VALUES (bench_uuid7(), bench_user(:u), 'DEDUCT', 4000, (:balance)::bigint, (:order_id)::uuid);
INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count)
  VALUES (date_trunc('hour', now()), bench_menu(:m), :shard, 1, 1)
  ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE
  SET quantity = menu_sales_hourly.quantity + excluded.quantity,
      order_count = menu_sales_hourly.order_count + excluded.order_count;
INSERT INTO outbox_events (id, event_type, aggregate_id, payload)
  VALUES (bench_uuid7(), 'ORDER_PLACED', (:order_id)::uuid, jsonb_build_object(
    'eventId', bench_uuid7(), 'type', 'ORDER_PLACED', 'orderId', (:order_id)::uuid, 'userId', bench_user(:u),
    'items', jsonb_build_array(jsonb_build_object('menuId', bench_menu(:m), 'quantity', 1, 'amount', 4000)),
    'totalAmount', 4000, 'occurredAt', now()));
UPDATE idempotency_keys SET outcome = jsonb_build_object(
    'Placed', jsonb_build_object('id', (:order_id)::uuid, 'user_id', bench_user(:u), 'total_price', 4000,
      'balance_after', (:balance)::bigint, 'created_at', now(),
      'lines', jsonb_build_array(jsonb_build_object('menu_id', bench_menu(:m), 'name', 'Americano',
        'quantity', 1, 'unit_price', 4000, 'total_price', 4000))))
  WHERE user_id = bench_user(:u) AND scope = 'orders.place' AND key = (:idem_key)::text;
COMMIT;
