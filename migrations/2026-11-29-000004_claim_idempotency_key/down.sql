DROP FUNCTION claim_idempotency_key(uuid, text, text, bytea, integer);
