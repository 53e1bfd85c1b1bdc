-- One `POST /orders` of one Americano in ONE round trip: a single call of
-- bench_place_order (setup.sql), which makes the writes of orders.sql (the
-- claim of the key, the menu's price, the payment, the order, its item, the
-- DEDUCT row, the hourly statistics shard, the outbox event, the stored
-- outcome) in one transaction. The ceiling of any design that writes what
-- the service writes: what remains is the commit. When the service's writes
-- change, bench_place_order changes with them.
-- Variables (-D): users, clients, run, as in orders.sql.
\set u 1 + :client_id + :clients * random(0, :users / :clients - 1)
\set k random(1, 1000000000000)
SELECT bench_place_order(bench_user(:u), (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text, sha256('orders.place Americano x1'::bytea), bench_menu(1), 1, 5000);
