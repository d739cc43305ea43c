-- The refresh lease and the row version (see store.RefreshCoordinator).
--
-- version changes on every write of a row's tokens, binding or
-- re-authentication mark, never on claiming or releasing the lease alone: a
-- lease is taken on one version, and its holder may write its refreshed
-- tokens only if the row is still at that version. Existing rows start at 1.
--
-- lease_owner and lease_until say which process redeems the row's refresh
-- token, and until when by the database's clock (now()). Both are NULL when
-- nobody does; a lease whose lease_until has passed may be taken over.

-- +goose Up
ALTER TABLE upstream_tokens
    ADD COLUMN version     bigint      NOT NULL DEFAULT 1,
    ADD COLUMN lease_owner text        NULL,
    ADD COLUMN lease_until timestamptz NULL,
    ADD CONSTRAINT upstream_tokens_lease_check
        CHECK ((lease_owner IS NULL) = (lease_until IS NULL));

-- +goose Down
ALTER TABLE upstream_tokens
    DROP CONSTRAINT upstream_tokens_lease_check,
    DROP COLUMN lease_until,
    DROP COLUMN lease_owner,
    DROP COLUMN version;
