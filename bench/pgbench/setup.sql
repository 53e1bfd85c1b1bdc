-- Set-up for pgbench/orders.sql: helper functions and :users funded users
-- with predictable ids. Run with psql -v users=N on the benchmark database.
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
CREATE OR REPLACE FUNCTION bench_menu(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
  SELECT ('0192f0a0-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid
$$;
INSERT INTO users (id, email, password_hash, name, point)
SELECT bench_user(n), 'pgbench-' || n || '@bench.example', 'x', 'pgbench', 100000000
FROM generate_series(1, :users) AS n
ON CONFLICT (id) DO UPDATE SET point = 100000000;
