-- One `POST /users/{id}/points/charge` of 1 point (as bench/wrk/load.lua
-- sends it): its statements (PgPointStore::charge in
-- crates/postgres/src/points.rs and idempotency::run in idempotency.rs), each
-- in a round trip of its own: the database's ceiling for the endpoint sent
-- statement by statement (the service pipelines them into two round trips: BEGIN, and the
-- balance locked with the key claimed and the clock in one statement; then the writes with the
-- stored outcome, and COMMIT). Its
-- one-round-trip twin is charge_one_trip.sql; helpers and users come from
-- setup.sql. When the service's writes change, these change with them.
-- 100000000 is the default BALANCE_MAX. Variables (-D): users, clients, run.
\set u 1 + :client_id + :clients * random(0, :users / :clients - 1)
\set k random(1, 1000000000000)
\set amount 1
BEGIN;
WITH balance AS MATERIALIZED (SELECT point FROM users WHERE id = bench_user(:u) FOR NO KEY UPDATE), claim AS (INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) SELECT bench_user(:u), 'points.charge', (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text, sha256('points.charge 1'::bytea), 'null'::jsonb FROM balance ON CONFLICT DO NOTHING RETURNING true) SELECT balance.point AS before, clock_timestamp() AS at, bench_uuid7() AS transaction_id, EXISTS (SELECT FROM claim) AS claimed FROM balance \gset
\set balance :before + :amount
WITH credit AS (UPDATE users SET point = point + (:amount)::bigint, updated_at = :at WHERE id = bench_user(:u)), ledger AS (INSERT INTO point_transactions (id, user_id, type, amount, balance_after, created_at) VALUES (:transaction_id, bench_user(:u), 'ADD', :amount, :balance, :at)) UPDATE idempotency_keys SET outcome = bench_charge_outcome(bench_user(:u), (:amount)::bigint, (:balance)::bigint, (:transaction_id)::uuid, (:at)::timestamptz) WHERE user_id = bench_user(:u) AND scope = 'points.charge' AND key = (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text;
COMMIT;
