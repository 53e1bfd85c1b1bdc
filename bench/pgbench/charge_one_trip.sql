-- One `POST /users/{id}/points/charge` of 1 point in ONE round trip: a single
-- call of bench_charge (setup.sql), which makes the writes of charge.sql (the
-- claim of the key, the capped balance update, the ADD row, the stored
-- outcome) in one transaction. When the service's writes change,
-- bench_charge changes with them. Variables (-D): users, clients, run.
\set u 1 + :client_id + :clients * random(0, :users / :clients - 1)
\set k random(1, 1000000000000)
SELECT bench_charge(bench_user(:u), (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text, sha256('points.charge 1'::bytea), 1, 100000000, 5000);
