-- Webhooks: the endpoints of each app, the outbox of deliveries, the log of
-- attempts, and the bus-wide channel state events are computed against.

-- An app's webhook endpoints.
CREATE TABLE webhooks (
    -- wh_ and 16 characters of [a-z0-9].
    id                       TEXT PRIMARY KEY,
    app_id                   TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- http(s) URL, at most 2048 bytes.
    url                      TEXT NOT NULL,
    -- JSON array of event kind names (herald_proto::webhook::EventKind).
    events                   TEXT NOT NULL,
    -- herald | pusher.
    format                   TEXT NOT NULL,
    -- NULL (every channel), prefix or namespace, with its value.
    filter_kind              TEXT,
    filter_value             TEXT,
    -- The Herald format's HMAC key (whsec_…), kept as is: signing needs it.
    secret                   TEXT NOT NULL,
    -- After a rotation: the previous secret, also signed with until then.
    previous_secret          TEXT,
    previous_secret_until_ms BIGINT,
    -- active | failing | disabled, and why (failing, disabled).
    status                   TEXT NOT NULL,
    status_reason            TEXT,
    -- When the failures without a success since began.
    failing_since_ms         BIGINT,
    -- Events not queued for it because the app's outbox was full, or
    -- dropped when it was disabled.
    dropped                  BIGINT NOT NULL DEFAULT 0,
    created_at_ms            BIGINT NOT NULL,
    updated_at_ms            BIGINT NOT NULL
);

CREATE INDEX webhooks_by_app ON webhooks (app_id, created_at_ms);

-- Deliveries still to make: one row per (event, endpoint), written in the
-- transaction that records the state change producing the event. A replica
-- leases a row (lease_owner, lease_until_ms) while it sends it; a replica
-- that dies mid-delivery lets the lease run out and another sends again.
CREATE TABLE webhook_outbox (
    seq                BIGSERIAL PRIMARY KEY,
    webhook_id         TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    app_id             TEXT NOT NULL,
    -- The event's id, the same for every endpoint and every attempt.
    event_id           TEXT NOT NULL,
    channel            TEXT NOT NULL,
    kind               TEXT NOT NULL,
    occurred_at_ms     BIGINT NOT NULL,
    -- JSON object of the kind's own fields (user_id, subscription_count, …).
    data               TEXT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until_ms     BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT,
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at_ms);
CREATE INDEX webhook_outbox_order ON webhook_outbox (webhook_id, channel, seq);
CREATE INDEX webhook_outbox_by_webhook ON webhook_outbox (webhook_id, seq);
CREATE INDEX webhook_outbox_by_app ON webhook_outbox (app_id);

-- The last attempts per endpoint (trimmed to webhook_log_size).
CREATE TABLE webhook_attempts (
    id          BIGSERIAL PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    channel     TEXT NOT NULL,
    -- 1 for the first attempt of the event.
    attempt     BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    -- The HTTP status; NULL when no answer came.
    status      BIGINT,
    latency_ms  BIGINT NOT NULL,
    error       TEXT,
    -- delivered | retrying | failed (given up or refused) | test.
    outcome     TEXT NOT NULL
);

CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, id);

-- Channels occupied as last recorded for webhooks (bus-wide), and the last
-- subscriber count sent. Only apps with webhook endpoints have rows.
CREATE TABLE webhook_channels (
    app_id           TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    channel          TEXT NOT NULL,
    subscribers      BIGINT NOT NULL,
    count_sent_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, channel)
);

-- Members of presence channels as last recorded for webhooks (bus-wide).
CREATE TABLE webhook_members (
    app_id  TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (app_id, channel, user_id)
);
