-- Bulk orders for the popular-menu benchmark (bench/popular.bench.sh) and the
-- tests that check its exactness (crates/postgres/tests/popular.rs,
-- tests/tests/popular.rs). Defines, for this session only:
--
--   pg_temp.seed_orders(batch, n, t0, t1, payer) -> n
--
-- n one-item orders of `payer`, stamped evenly over [t0, t1) (the i-th at
-- t0 + i (t1 - t0) / n, to the microsecond), with their items and the hourly
-- statistics rows the order path keeps (`menu_sales_hourly`, shard i % 16),
-- consistent with each other as if placed one by one. The menu and the
-- quantity (1 to 3) vary with i + batch. Order and item ids start with
-- `batch` (0 to 65535, one per call so ids never collide) and ascend with
-- time, so every index grows at its end. Balances and the points ledger are
-- not touched: the payer pays nothing.
--
-- Plain SQL, no psql commands, so tests can run it as is.

CREATE FUNCTION pg_temp.seed_rows(batch integer, n bigint, t0 timestamptz, t1 timestamptz, menus integer)
RETURNS TABLE (i bigint, id uuid, created_at timestamptz, k integer, quantity integer)
LANGUAGE sql IMMUTABLE AS $$
    WITH span AS (SELECT (extract(epoch FROM t1 - t0) * 1000000)::bigint AS us)
    SELECT g.i,
           (lpad(to_hex(batch), 4, '0') || lpad(to_hex(g.i), 28, '0'))::uuid,
           -- i * us / n without overflowing bigint.
           t0 + ((span.us / n) * g.i + (span.us % n) * g.i / n) * interval '1 microsecond',
           1 + ((g.i + batch) % 97)::integer % menus,
           1 + ((g.i + batch) / 7 % 3)::integer
    FROM span, generate_series(0::bigint, n - 1) AS g (i)
$$;

CREATE FUNCTION pg_temp.seed_orders(batch integer, n bigint, t0 timestamptz, t1 timestamptz, payer uuid)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    menu_ids uuid[];
    menu_names text[];
    menu_prices bigint[];
    menu_count integer;
BEGIN
    SELECT array_agg(m.id ORDER BY m.id), array_agg(m.name ORDER BY m.id), array_agg(m.price ORDER BY m.id)
    INTO menu_ids, menu_names, menu_prices FROM menus m;
    menu_count := cardinality(menu_ids);

    INSERT INTO orders (id, user_id, total_price, balance_after, created_at)
    SELECT s.id, payer, menu_prices[s.k] * s.quantity, 0, s.created_at
    FROM pg_temp.seed_rows(batch, n, t0, t1, menu_count) s;

    INSERT INTO order_items (id, order_id, menu_id, menu_name, quantity, unit_price, total_price, created_at)
    SELECT s.id, s.id, menu_ids[s.k], menu_names[s.k], s.quantity, menu_prices[s.k],
           menu_prices[s.k] * s.quantity, s.created_at
    FROM pg_temp.seed_rows(batch, n, t0, t1, menu_count) s;

    INSERT INTO menu_sales_hourly (bucket_start, menu_id, shard, quantity, order_count)
    SELECT date_trunc('hour', s.created_at, 'UTC'), menu_ids[s.k], (s.i % 16)::smallint, sum(s.quantity), count(*)
    FROM pg_temp.seed_rows(batch, n, t0, t1, menu_count) s
    GROUP BY 1, 2, 3
    -- An hour's rows side by side, as when the order path creates them
    -- during that hour.
    ORDER BY 1, 2, 3
    ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE
    SET quantity = menu_sales_hourly.quantity + EXCLUDED.quantity,
        order_count = menu_sales_hourly.order_count + EXCLUDED.order_count;
    RETURN n;
END
$$;
