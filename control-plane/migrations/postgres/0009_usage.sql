-- Per-app usage: counters per minute, hour and day (rolled up as each
-- batch is stored), refusals by reason, the batches stored (so a resent
-- batch is counted once), each node's latest connection figures, and the
-- apps' quotas.

-- One row per app, unit (minute | hour | day) and interval start (Unix ms).
-- Counters add; peaks keep the largest.
CREATE TABLE usage_stats (
    app_id                TEXT NOT NULL,
    unit                  TEXT NOT NULL,
    start_ms              BIGINT NOT NULL,
    published_rest        BIGINT NOT NULL DEFAULT 0,
    published_grpc        BIGINT NOT NULL DEFAULT 0,
    published_pusher_http BIGINT NOT NULL DEFAULT 0,
    published_client      BIGINT NOT NULL DEFAULT 0,
    delivered             BIGINT NOT NULL DEFAULT 0,
    bytes_in              BIGINT NOT NULL DEFAULT 0,
    bytes_out             BIGINT NOT NULL DEFAULT 0,
    connections_opened    BIGINT NOT NULL DEFAULT 0,
    peak_connections      BIGINT NOT NULL DEFAULT 0,
    peak_channels         BIGINT NOT NULL DEFAULT 0,
    webhooks_ok           BIGINT NOT NULL DEFAULT 0,
    webhooks_failed       BIGINT NOT NULL DEFAULT 0,
    refused               BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, unit, start_ms)
);

CREATE INDEX usage_stats_by_start ON usage_stats (unit, start_ms);

-- Refusals of one reason (a close or error code's name) in one interval.
CREATE TABLE usage_refusals (
    app_id   TEXT NOT NULL,
    unit     TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    reason   TEXT NOT NULL,
    count    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, unit, start_ms, reason)
);

CREATE INDEX usage_refusals_by_start ON usage_refusals (unit, start_ms);

-- Batches stored: (node, sequence) once each.
CREATE TABLE usage_batches (
    node_id      TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    stored_at_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, seq)
);

CREATE INDEX usage_batches_by_time ON usage_batches (stored_at_ms);

-- Each node's latest figures per app.
CREATE TABLE usage_gauges (
    app_id        TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    connections   BIGINT NOT NULL,
    channels      BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app_id, node_id)
);

CREATE INDEX usage_gauges_by_time ON usage_gauges (updated_at_ms);

-- Quotas; NULL: none.
ALTER TABLE apps ADD COLUMN quota_messages_per_day BIGINT;
ALTER TABLE apps ADD COLUMN quota_messages_per_month BIGINT;
ALTER TABLE apps ADD COLUMN quota_connections BIGINT;
