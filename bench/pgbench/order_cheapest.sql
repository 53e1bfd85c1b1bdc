-- One `POST /orders` of one Americano in ONE round trip, the cheapest correct
-- way (issue 25): a single call of bench_place_order_cheapest (setup.sql),
-- which writes the rows order_one_trip.sql writes, but claims the key with
-- INSERT ... ON CONFLICT DO NOTHING RETURNING (no subtransaction) and pays
-- with one conditional UPDATE ... WHERE point >= total RETURNING.
-- Variables (-D): users, clients, run, as in orders.sql.
\set u 1 + :client_id + :clients * random(0, :users / :clients - 1)
\set k random(1, 1000000000000)
SELECT bench_place_order_cheapest(bench_user(:u), (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text, sha256('orders.place Americano x1'::bytea), bench_menu(1), 1);
