-- Set-up for the pgbench ceilings of bench/throughput.bench.sh (orders.sql,
-- order_one_trip.sql, charge.sql, charge_one_trip.sql): helper functions, the
-- one-round-trip functions bench_place_order and bench_charge, and :users
-- funded users with predictable ids. Run with psql -v users=N on a migrated
-- benchmark database.
--
-- The ceilings must write what the service writes: when the service's writes
-- change (crates/postgres/src/orders.rs, points.rs, idempotency.rs, the
-- migrations), the ceiling's writes change with them, here and in the scripts.
\set ON_ERROR_STOP on

-- A UUID whose first 48 bits are the time in milliseconds, like the
-- service's UUIDv7, so primary-key inserts land at the right of the index.
CREATE OR REPLACE FUNCTION bench_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode(overlay(uuid_send(gen_random_uuid())
    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
    FROM 1 FOR 6), 'hex')::uuid
$$;
CREATE OR REPLACE FUNCTION bench_user(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
  SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid
$$;
-- Menus of migration 1: bench_menu(1) is the Americano that `POST /orders`
-- orders under wrk (bench/wrk/load.lua).
CREATE OR REPLACE FUNCTION bench_menu(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
  SELECT ('0192f0a0-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid
$$;

-- The statistics bucket of an instant: the start of its UTC hour (hour_of
-- in orders.rs).
CREATE OR REPLACE FUNCTION bench_hour(t timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
  SELECT date_trunc('hour', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;
-- The statistics shard of an order: its id modulo 16 (STATISTICS_SHARDS),
-- i.e. the id's last hex digit.
CREATE OR REPLACE FUNCTION bench_shard(order_id uuid) RETURNS smallint LANGUAGE sql IMMUTABLE AS $$
  SELECT ('x' || right(order_id::text, 1))::bit(4)::int::smallint
$$;
-- An instant as serde_json writes the service's `OffsetDateTime` in stored
-- outcomes (the time crate without serde-human-readable): [year, ordinal day,
-- hour, minute, second, nanosecond, offset h, m, s], in UTC.
CREATE OR REPLACE FUNCTION bench_time_json(t timestamptz) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_array(extract(year FROM u)::int, extract(doy FROM u)::int, extract(hour FROM u)::int,
    extract(minute FROM u)::int, floor(extract(second FROM u))::int,
    (extract(microseconds FROM u)::bigint % 1000000) * 1000, 0, 0, 0)
  FROM (SELECT t AT TIME ZONE 'UTC') AS x(u)
$$;
-- An instant in RFC 3339, UTC, as the order event's occurredAt.
CREATE OR REPLACE FUNCTION bench_rfc3339(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT to_char(u, 'YYYY-MM-DD"T"HH24:MI:SS')
    || coalesce('.' || nullif(rtrim(to_char(u, 'US'), '0'), ''), '') || 'Z'
  FROM (SELECT t AT TIME ZONE 'UTC') AS x(u)
$$;

-- The JSON the service writes: the ORDER_PLACED event (OrderPlacedEvent), the
-- stored outcome of a placed order (PlaceOrderOutcome::Placed) and of a
-- charge (ChargeOutcome::Charged), for orders of one line.
CREATE OR REPLACE FUNCTION bench_order_event(event_id uuid, order_id uuid, user_id uuid, menu_id uuid,
    quantity int, line_total bigint, total bigint, at timestamptz) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('eventId', event_id, 'type', 'ORDER_PLACED', 'orderId', order_id, 'userId', user_id,
    'items', jsonb_build_array(jsonb_build_object('menuId', menu_id, 'quantity', quantity, 'amount', line_total)),
    'totalAmount', total, 'occurredAt', bench_rfc3339(at))
$$;
CREATE OR REPLACE FUNCTION bench_order_outcome(order_id uuid, user_id uuid, menu_id uuid, menu_name text,
    quantity int, unit_price bigint, total bigint, balance bigint, at timestamptz)
    RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('Placed', jsonb_build_object('id', order_id, 'user_id', user_id,
    'lines', jsonb_build_array(jsonb_build_object('menu_id', menu_id, 'name', menu_name,
      'quantity', quantity, 'unit_price', unit_price, 'total_price', total)),
    'total_price', total, 'balance_after', balance, 'created_at', bench_time_json(at)))
$$;
CREATE OR REPLACE FUNCTION bench_charge_outcome(user_id uuid, amount bigint, balance bigint,
    transaction_id uuid, at timestamptz) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('Charged', jsonb_build_object('user_id', user_id, 'amount', amount,
    'balance', balance, 'transaction_id', transaction_id, 'charged_at', bench_time_json(at)))
$$;

-- bench_claim: claim_idempotency_key as the service reads its answer: null
-- for a fresh key, the stored outcome for a replay, an error for a key in
-- use or reused with another request (the service answers 409 and rolls back).
CREATE OR REPLACE FUNCTION bench_claim(p_user uuid, p_scope text, p_key text, p_fingerprint bytea,
    p_wait_ms int) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  c record;
BEGIN
  SELECT * INTO c FROM claim_idempotency_key(p_user, p_scope, p_key, p_fingerprint, p_wait_ms);
  IF c.state = 'fresh' THEN
    RETURN NULL;
  ELSIF c.state = 'stored' AND c.fingerprint = p_fingerprint THEN
    RETURN c.outcome;
  END IF;
  RAISE EXCEPTION 'idempotency key % of %: %', p_key, p_scope,
    CASE c.state WHEN 'stored' THEN 'reused with another request' ELSE c.state END;
END
$$;

-- What a POST /orders of one line writes once its key is claimed: the
-- menu's price, the payment as one conditional UPDATE ... WHERE point >=
-- total RETURNING (the clock read after the row lock stamps everything the
-- order writes), the order, its item, the DEDUCT row, the hourly statistics
-- shard, the outbox event and the stored outcome, in the caller's
-- transaction. Answers the outcome. Shared by both order ceilings, which
-- differ only in their claim.
CREATE OR REPLACE FUNCTION bench_order_writes(p_user uuid, p_key text, p_menu uuid, p_quantity int)
    RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_menu record;
  v_total bigint;
  v_balance bigint;
  v_at timestamptz;
  v_order uuid;
  v_event uuid;
  v_outcome jsonb;
BEGIN
  SELECT id, name, price INTO v_menu FROM menus WHERE id = p_menu;
  IF NOT FOUND THEN
    v_outcome := jsonb_build_object('MenuNotFound', jsonb_build_object('menu_ids', jsonb_build_array(p_menu)));
  ELSE
    v_total := v_menu.price * p_quantity;
    UPDATE users SET point = point - v_total, updated_at = clock_timestamp()
      WHERE id = p_user AND point >= v_total
      RETURNING point, updated_at INTO v_balance, v_at;
    IF NOT FOUND THEN
      SELECT point INTO STRICT v_balance FROM users WHERE id = p_user;
      v_outcome := jsonb_build_object('InsufficientPoints',
        jsonb_build_object('balance', v_balance, 'required', v_total));
    ELSE
      v_order := bench_uuid7();
      v_event := bench_uuid7();
      INSERT INTO orders (id, user_id, total_price, balance_after, created_at)
        VALUES (v_order, p_user, v_total, v_balance, v_at);
      INSERT INTO order_items (id, order_id, menu_id, menu_name, quantity, unit_price, total_price, created_at)
        VALUES (bench_uuid7(), v_order, p_menu, v_menu.name, p_quantity, v_menu.price, v_total, v_at);
      INSERT INTO point_transactions (id, user_id, type, amount, balance_after, order_id, created_at)
        VALUES (bench_uuid7(), p_user, 'DEDUCT', v_total, v_balance, v_order, v_at);
      INSERT INTO menu_sales_hourly AS s (bucket_start, menu_id, shard, quantity, order_count)
        VALUES (bench_hour(v_at), p_menu, bench_shard(v_order), p_quantity, 1)
        ON CONFLICT (bucket_start, menu_id, shard) DO UPDATE
        SET quantity = s.quantity + excluded.quantity, order_count = s.order_count + excluded.order_count;
      INSERT INTO outbox_events (id, event_type, aggregate_id, payload)
        VALUES (v_event, 'ORDER_PLACED', v_order,
          bench_order_event(v_event, v_order, p_user, p_menu, p_quantity, v_total, v_total, v_at));
      v_outcome := bench_order_outcome(v_order, p_user, p_menu, v_menu.name, p_quantity, v_menu.price,
        v_total, v_balance, v_at);
    END IF;
  END IF;
  UPDATE idempotency_keys SET outcome = v_outcome
    WHERE user_id = p_user AND scope = 'orders.place' AND key = p_key;
  RETURN v_outcome;
END
$$;

-- What a POST /users/{id}/points/charge writes once its key is claimed: the
-- capped conditional UPDATE, the ADD row and the stored outcome. Shared by
-- both charge ceilings.
CREATE OR REPLACE FUNCTION bench_charge_writes(p_user uuid, p_key text, p_amount bigint, p_max_balance bigint)
    RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_balance bigint;
  v_at timestamptz;
  v_transaction uuid;
  v_outcome jsonb;
BEGIN
  UPDATE users SET point = point + p_amount, updated_at = clock_timestamp()
    WHERE id = p_user AND point + p_amount <= p_max_balance
    RETURNING point, updated_at INTO v_balance, v_at;
  IF NOT FOUND THEN
    SELECT point INTO STRICT v_balance FROM users WHERE id = p_user;
    v_outcome := jsonb_build_object('BalanceLimitExceeded',
      jsonb_build_object('balance', v_balance, 'amount', p_amount, 'max_balance', p_max_balance));
  ELSE
    v_transaction := bench_uuid7();
    INSERT INTO point_transactions (id, user_id, type, amount, balance_after, created_at)
      VALUES (v_transaction, p_user, 'ADD', p_amount, v_balance, v_at);
    v_outcome := bench_charge_outcome(p_user, p_amount, v_balance, v_transaction, v_at);
  END IF;
  UPDATE idempotency_keys SET outcome = v_outcome
    WHERE user_id = p_user AND scope = 'points.charge' AND key = p_key;
  RETURN v_outcome;
END
$$;

-- One POST /orders of one line in one round trip, as the service wrote it
-- until issue 25: the key claimed by claim_idempotency_key (bench_claim, a
-- subtransaction), then bench_order_writes. One call in autocommit is one
-- transaction. Answers the stored outcome.
CREATE OR REPLACE FUNCTION bench_place_order(p_user uuid, p_key text, p_fingerprint bytea, p_menu uuid,
    p_quantity int, p_wait_ms int) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN coalesce(bench_claim(p_user, 'orders.place', p_key, p_fingerprint, p_wait_ms),
                  bench_order_writes(p_user, p_key, p_menu, p_quantity));
END
$$;

-- One POST /users/{id}/points/charge in one round trip, likewise.
CREATE OR REPLACE FUNCTION bench_charge(p_user uuid, p_key text, p_fingerprint bytea, p_amount bigint,
    p_max_balance bigint, p_wait_ms int) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN coalesce(bench_claim(p_user, 'points.charge', p_key, p_fingerprint, p_wait_ms),
                  bench_charge_writes(p_user, p_key, p_amount, p_max_balance));
END
$$;

-- The cheapest correct claim (issue 25): INSERT ... ON CONFLICT DO NOTHING
-- RETURNING, no subtransaction, no lock_timeout. A concurrent duplicate's
-- insert waits for the first transaction to end, then finds its row: the
-- stored outcome (a replay) once it committed. Null for a fresh key; an error
-- for a key reused with another request or purged meanwhile.
CREATE OR REPLACE FUNCTION bench_claim_cheapest(p_user uuid, p_scope text, p_key text, p_fingerprint bytea)
    RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  c record;
BEGIN
  INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome)
    VALUES (p_user, p_scope, p_key, p_fingerprint, 'null'::jsonb)
    ON CONFLICT DO NOTHING RETURNING true AS fresh INTO c;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  SELECT k.fingerprint, k.outcome INTO c FROM idempotency_keys k
    WHERE k.user_id = p_user AND k.scope = p_scope AND k.key = p_key;
  IF FOUND AND c.fingerprint = p_fingerprint THEN
    RETURN c.outcome;
  END IF;
  RAISE EXCEPTION 'idempotency key % of %: reused with another request, or purged', p_key, p_scope;
END
$$;

-- One POST /orders of one line in one round trip, the cheapest correct way
-- (issue 25): bench_claim_cheapest, then bench_order_writes (whose payment
-- is one conditional UPDATE; no subtransaction anywhere).
CREATE OR REPLACE FUNCTION bench_place_order_cheapest(p_user uuid, p_key text, p_fingerprint bytea, p_menu uuid,
    p_quantity int) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN coalesce(bench_claim_cheapest(p_user, 'orders.place', p_key, p_fingerprint),
                  bench_order_writes(p_user, p_key, p_menu, p_quantity));
END
$$;

-- One POST /users/{id}/points/charge in one round trip, the cheapest correct
-- way: bench_claim_cheapest, then bench_charge_writes.
CREATE OR REPLACE FUNCTION bench_charge_cheapest(p_user uuid, p_key text, p_fingerprint bytea, p_amount bigint,
    p_max_balance bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RETURN coalesce(bench_claim_cheapest(p_user, 'points.charge', p_key, p_fingerprint),
                  bench_charge_writes(p_user, p_key, p_amount, p_max_balance));
END
$$;

-- :users users of pgbench's own, each funded with 50,000,000 points by an ADD
-- row (the ledger's invariant holds), half the default BALANCE_MAX: room for
-- every order and every 1-point charge of a run.
WITH funded AS (
  INSERT INTO users (id, email, password_hash, name, point)
  SELECT bench_user(n), 'pgbench-' || n || '@bench.example', 'x', 'pgbench', 50000000
  FROM generate_series(1, :users) AS n
  ON CONFLICT (id) DO NOTHING
  RETURNING id, point
)
INSERT INTO point_transactions (id, user_id, type, amount, balance_after)
SELECT bench_uuid7(), id, 'ADD', point, point FROM funded;
