-- Change notifications name a session by a keyed hash of its ID, never by
-- the ID itself (see package store/cached and postgres.Listener).
--
-- Any database role may LISTEN on any channel, so the payload of the
-- notifications of migration 00003 ([session_id, provider]) handed session
-- IDs, which are bearer-like identifiers, to every role that can connect.
-- From this migration on the payload on channel extauthz_tokens is the
-- lower-case hex SHA-256 of the notification key followed by the session
-- ID's UTF-8 bytes (64 characters), or "*" as before for a change that
-- concerns every row (TRUNCATE, or no key to hash with). Without the key a
-- listener learns only that some session changed.
--
-- The key is 32 random bytes generated here, in the database, from two
-- gen_random_uuid() (core PostgreSQL since 13, from a cryptographically
-- strong source) hashed together; it never leaves the database except to
-- the service, which reads it on its listening connection. It lives in the
-- one-row table extauthz_notify_key, readable by its owner (the migrating
-- role); the role the service runs as needs SELECT on it (see the README's
-- "Database roles"), and no other role should have it.
--
-- The trigger function runs as its owner (SECURITY DEFINER), so that a role
-- that writes upstream_tokens (an authorization server writing SQL) needs
-- no access to the key; its search_path is pinned to this schema, with
-- pg_temp last, so that no session can substitute a key table of its own.
--
-- To change the key: UPDATE extauthz_notify_key SET key = sha256(...) as
-- below; the replicas' listeners read it again within a heartbeat and clear
-- their caches when it changes.

-- +goose Up
CREATE TABLE extauthz_notify_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea   NOT NULL CHECK (octet_length(key) = 32)
);

REVOKE ALL ON extauthz_notify_key FROM PUBLIC;

INSERT INTO extauthz_notify_key (key)
VALUES (sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION upstream_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    k bytea;
BEGIN
    SELECT key INTO k FROM extauthz_notify_key;
    IF TG_OP = 'TRUNCATE' OR k IS NULL THEN
        PERFORM pg_notify('extauthz_tokens', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('extauthz_tokens', encode(sha256(k || convert_to(OLD.session_id, 'UTF8')), 'hex'));
    END IF;
    -- An UPDATE that changes the session ID makes both sessions stale.
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.session_id IS DISTINCT FROM OLD.session_id) THEN
        PERFORM pg_notify('extauthz_tokens', encode(sha256(k || convert_to(NEW.session_id, 'UTF8')), 'hex'));
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION upstream_tokens_notify() SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION upstream_tokens_notify() RETURNS trigger
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
ALTER FUNCTION upstream_tokens_notify() SECURITY INVOKER RESET search_path;
DROP TABLE extauthz_notify_key;
