-- Idempotency ids shared by every replica: a publish with an id claims
-- (app, channel, id) here before it goes to the bus.
CREATE TABLE idempotency (
    app_id        TEXT NOT NULL,
    channel       TEXT NOT NULL,
    idem_id       TEXT NOT NULL,
    -- 0: an attempt is in flight; 1: accepted by the bus.
    state         INTEGER  NOT NULL,
    -- A pending claim expires (its replica may have died); an accepted one
    -- at the end of the window.
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, channel, idem_id)
);

CREATE INDEX idempotency_expiry ON idempotency (expires_at_ms);
