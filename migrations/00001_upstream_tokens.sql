-- Upstream identity-provider tokens, one row per (session, provider).
-- See store.Row for the meaning of every column.
--
-- session_id and provider use the "C" collation: they are opaque identifiers,
-- compared and ordered byte by byte whatever the database's locale.
--
-- Later migrations are expected to add, rather than reshape, columns: a key ID
-- when token encryption at rest arrives, and a refresh lease.

-- +goose Up
CREATE TABLE upstream_tokens (
    session_id         text COLLATE "C" NOT NULL,
    provider           text COLLATE "C" NOT NULL,
    access_token       text        NOT NULL,
    refresh_token      text        NOT NULL DEFAULT '',
    id_token           text        NOT NULL DEFAULT '',
    token_type         text        NOT NULL DEFAULT 'Bearer',
    -- NULL means the access token never expires.
    expires_at         timestamptz NULL,
    -- The binding: the authorization server's subject and client ID.
    subject            text        NOT NULL,
    client_id          text        NOT NULL,
    upstream_subject   text        NOT NULL DEFAULT '',
    -- NULL means the session is never garbage collected.
    session_expires_at timestamptz NULL,
    needs_reauth       boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, provider)
);

-- For garbage collection of expired sessions.
CREATE INDEX upstream_tokens_session_expires_at_idx
    ON upstream_tokens (session_expires_at)
    WHERE session_expires_at IS NOT NULL;

-- +goose Down
DROP TABLE upstream_tokens;
