-- Change notifications for the replicas' caches of upstream tokens (see
-- package store/cached and postgres.Listener).
--
-- Every change to what a Check could be served from a row sends a
-- notification on the channel extauthz_tokens, whoever makes it: the service,
-- 'extauthz tokens put|delete', 'extauthz keys rotate', garbage collection,
-- or an authorization server writing SQL. The payload names the row and
-- never holds a token: the JSON array [session_id, provider]. A payload that
-- would exceed PostgreSQL's limit (8000 bytes; only an absurdly long session
-- ID or provider name can get there) is replaced by "*", which means "forget
-- everything". TRUNCATE sends "*" too.
--
-- Notifications are sent when the transaction commits, in commit order, and
-- PostgreSQL folds identical ones within a transaction into one. An UPDATE
-- that changes nothing but the refresh lease (lease_owner, lease_until: a
-- claim, or the release of a lease without re-authentication) sends none, so
-- that a refresh storm's claims do not flush every replica's cache; the
-- comparison covers every other column, including any column a later
-- migration adds.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION upstream_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('extauthz_tokens', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        payload := json_build_array(OLD.session_id, OLD.provider)::text;
        IF octet_length(payload) > 7900 THEN
            payload := '*';
        END IF;
        PERFORM pg_notify('extauthz_tokens', payload);
    END IF;
    -- An UPDATE that changes the key makes both keys stale.
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE'
            AND (NEW.session_id, NEW.provider) IS DISTINCT FROM (OLD.session_id, OLD.provider)) THEN
        payload := json_build_array(NEW.session_id, NEW.provider)::text;
        IF octet_length(payload) > 7900 THEN
            payload := '*';
        END IF;
        PERFORM pg_notify('extauthz_tokens', payload);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER upstream_tokens_notify_insert_delete
    AFTER INSERT OR DELETE ON upstream_tokens
    FOR EACH ROW EXECUTE FUNCTION upstream_tokens_notify();

CREATE TRIGGER upstream_tokens_notify_update
    AFTER UPDATE ON upstream_tokens
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'lease_owner' - 'lease_until') IS DISTINCT FROM (to_jsonb(NEW) - 'lease_owner' - 'lease_until'))
    EXECUTE FUNCTION upstream_tokens_notify();

CREATE TRIGGER upstream_tokens_notify_truncate
    AFTER TRUNCATE ON upstream_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION upstream_tokens_notify();

-- +goose Down
DROP TRIGGER upstream_tokens_notify_truncate ON upstream_tokens;
DROP TRIGGER upstream_tokens_notify_update ON upstream_tokens;
DROP TRIGGER upstream_tokens_notify_insert_delete ON upstream_tokens;
DROP FUNCTION upstream_tokens_notify();
