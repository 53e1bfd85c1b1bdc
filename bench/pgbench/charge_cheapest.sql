-- One `POST /users/{id}/points/charge` of 1 point in ONE round trip, the
-- cheapest correct way (issue 25): bench_charge_cheapest (setup.sql), the
-- claim without a subtransaction and the capped conditional UPDATE.
-- Variables (-D): users, clients, run.
\set u 1 + :client_id + :clients * random(0, :users / :clients - 1)
\set k random(1, 1000000000000)
SELECT bench_charge_cheapest(bench_user(:u), (:run)::text || '-' || (:client_id)::text || '-' || (:k)::text, sha256('points.charge 1'::bytea), 1, 100000000);
