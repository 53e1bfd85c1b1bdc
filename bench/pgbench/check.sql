-- After the pgbench ceilings (bench/throughput.bench.sh): did every
-- transaction write every row? Prints the counts of the pgbench users' rows
-- and fails (ON_ERROR_STOP) when an order or a charge misses one, a key has no
-- outcome, or a balance is negative or differs from its ledger.
\set ON_ERROR_STOP on
CREATE TEMP VIEW bench_counts AS
WITH u AS (SELECT id FROM users WHERE email LIKE 'pgbench-%@bench.example')
SELECT
  (SELECT count(*) FROM orders WHERE user_id IN (SELECT id FROM u)) AS orders,
  (SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.user_id IN (SELECT id FROM u)) AS order_items,
  (SELECT count(*) FROM point_transactions WHERE type = 'DEDUCT' AND user_id IN (SELECT id FROM u)) AS deducts,
  (SELECT count(*) FROM outbox_events e JOIN orders o ON o.id = e.aggregate_id
     WHERE e.event_type = 'ORDER_PLACED' AND o.user_id IN (SELECT id FROM u)) AS order_events,
  (SELECT count(*) FROM idempotency_keys WHERE scope = 'orders.place' AND outcome ? 'Placed' AND user_id IN (SELECT id FROM u)) AS order_keys,
  (SELECT coalesce(sum(order_count), 0) FROM menu_sales_hourly) - (SELECT count(*) FROM orders) AS stats_minus_all_orders,
  (SELECT count(*) FROM point_transactions WHERE type = 'ADD' AND user_id IN (SELECT id FROM u))
    - (SELECT count(*) FROM u) AS charges,
  (SELECT count(*) FROM idempotency_keys WHERE scope = 'points.charge' AND outcome ? 'Charged' AND user_id IN (SELECT id FROM u)) AS charge_keys,
  (SELECT count(*) FROM idempotency_keys WHERE outcome = 'null'::jsonb) AS keys_without_outcome,
  (SELECT min(point) FROM users) AS min_balance,
  (SELECT count(*) FROM users x WHERE x.point <> (SELECT coalesce(sum(CASE type WHEN 'ADD' THEN amount ELSE -amount END), 0)
     FROM point_transactions t WHERE t.user_id = x.id) AND x.id IN (SELECT id FROM u)) AS balances_off_ledger;
SELECT * FROM bench_counts;
DO $$
DECLARE c record;
BEGIN
  SELECT * INTO c FROM bench_counts;
  IF c.order_items <> c.orders OR c.deducts <> c.orders OR c.order_events <> c.orders OR c.order_keys <> c.orders
     OR c.stats_minus_all_orders <> 0 OR c.charge_keys <> c.charges OR c.keys_without_outcome <> 0
     OR c.min_balance < 0 OR c.balances_off_ledger <> 0 THEN
    RAISE EXCEPTION 'the pgbench ceilings did not write every row: %', row_to_json(c);
  END IF;
END
$$;
