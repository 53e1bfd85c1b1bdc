-- Seeds :orders orders spread uniformly over the last 7 days across every menu,
-- with their items and the hourly statistics buckets they imply, for the
-- GET /menus/popular benchmark. Run with psql -v orders=1000000.
\set ON_ERROR_STOP on
SET TIME ZONE 'UTC';

INSERT INTO users (id, email, password_hash, name, point)
VALUES ('00000000-0000-7000-8000-00000000bee5', 'seed@bench.example', 'x', 'Bench Seed', 0)
ON CONFLICT DO NOTHING;

CREATE TEMP TABLE seed AS
SELECT gen_random_uuid() AS order_id,
       now() - random() * interval '7 days' AS created_at,
       1 + floor(random() * (SELECT count(*) FROM menus))::int AS k,
       1 + floor(random() * 3)::int AS q
FROM generate_series(1, :orders);

CREATE TEMP TABLE m AS
SELECT row_number() OVER (ORDER BY id)::int AS k, id, name, price FROM menus;

INSERT INTO orders (id, user_id, total_price, balance_after, created_at)
SELECT s.order_id, '00000000-0000-7000-8000-00000000bee5', m.price * s.q, 0, s.created_at
FROM seed s JOIN m USING (k);

INSERT INTO order_items (id, order_id, menu_id, menu_name, quantity, unit_price, total_price, created_at)
SELECT gen_random_uuid(), s.order_id, m.id, m.name, s.q, m.price, m.price * s.q, s.created_at
FROM seed s JOIN m USING (k);

INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count)
SELECT date_trunc('hour', s.created_at), m.id, 0, sum(s.q), count(*)
FROM seed s JOIN m USING (k)
GROUP BY 1, 2
ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE
SET quantity = menu_sales_hourly.quantity + EXCLUDED.quantity,
    order_count = menu_sales_hourly.order_count + EXCLUDED.order_count;

VACUUM ANALYZE orders;
VACUUM ANALYZE order_items;
VACUUM ANALYZE menu_sales_hourly;
