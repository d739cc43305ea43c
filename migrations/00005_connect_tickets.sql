-- The connect tickets already redeemed (see package connect): a ticket is
-- single use, and its random ID is recorded here when it is redeemed, so that
-- a second redemption, on any replica, is refused.
--
-- id is the ticket's random ID (16 bytes), never the ticket itself: the ID
-- alone opens nothing. expires_at is the ticket's expiry; a row is needed
-- only until then (an expired ticket is refused before this table is
-- consulted), and the statement that records a redemption deletes a few rows
-- whose expiry has passed by more than an hour (the margin covers replicas'
-- clocks that disagree), so the table stays small without a collector.
--
-- The service's runtime role needs SELECT, INSERT, UPDATE and DELETE on it
-- (UPDATE for the row locks of the clean-up: FOR UPDATE SKIP LOCKED).

-- +goose Up
CREATE TABLE extauthz_connect_tickets (
    id         bytea       PRIMARY KEY CHECK (octet_length(id) = 16),
    expires_at timestamptz NOT NULL
);

CREATE INDEX extauthz_connect_tickets_expires_at_idx
    ON extauthz_connect_tickets (expires_at);

-- +goose Down
DROP TABLE extauthz_connect_tickets;
