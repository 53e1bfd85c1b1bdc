-- Claims an idempotency key inside the caller's transaction, in one round trip.
--
-- The insert waits on the primary key while a concurrent duplicate's
-- transaction is open, at most `wait_ms`. A wait that runs out is caught here
-- by its SQLSTATE condition (`lock_not_available`, 55P03), so the caller never
-- has to recognise the error by its message text, which PostgreSQL translates
-- into the server's `lc_messages` language.
--
-- Answers one row:
--   state 'fresh'    the key is ours (its outcome is written before commit);
--   state 'stored'   the key was used before: its fingerprint and outcome;
--   state 'in_use'   a duplicate still holds it after `wait_ms`, or it was
--                    purged between the insert and the read: try again later.
CREATE FUNCTION claim_idempotency_key(
    p_user uuid, p_scope text, p_key text, p_fingerprint bytea, p_wait_ms integer
) RETURNS TABLE (state text, fingerprint bytea, outcome jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    previous_timeout text := current_setting('lock_timeout');
    inserted integer;
BEGIN
    PERFORM set_config('lock_timeout', greatest(p_wait_ms, 1)::text, true);
    BEGIN
        INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome)
        VALUES (p_user, p_scope, p_key, p_fingerprint, 'null'::jsonb)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', previous_timeout, true);
        RETURN QUERY SELECT 'in_use'::text, NULL::bytea, NULL::jsonb;
        RETURN;
    END;
    PERFORM set_config('lock_timeout', previous_timeout, true);
    IF inserted = 1 THEN
        RETURN QUERY SELECT 'fresh'::text, NULL::bytea, NULL::jsonb;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT 'stored'::text, k.fingerprint, k.outcome
        FROM idempotency_keys k
        WHERE k.user_id = p_user AND k.scope = p_scope AND k.key = p_key;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'in_use'::text, NULL::bytea, NULL::jsonb;
    END IF;
END
$$;
