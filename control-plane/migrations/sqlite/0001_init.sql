-- Herald control plane, SQLite schema v1 (same shape as the PostgreSQL one).
-- Timestamps are Unix milliseconds; JSON documents are stored as TEXT so
-- the same queries run on SQLite.

CREATE TABLE apps (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    -- NULL: the server's default limit.
    max_connections      BIGINT,
    max_message_bytes    BIGINT,
    publish_rate_per_sec BIGINT,
    -- JSON array of exact Origin values; empty allows every origin.
    allowed_origins      TEXT NOT NULL DEFAULT '[]',
    created_at_ms        BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    -- JSON object: channel pattern -> operations.
    capabilities  TEXT NOT NULL,
    -- SHA-256 of the secret part of the key; the secret itself is never stored.
    secret_hash   BLOB  NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE INDEX api_keys_by_app ON api_keys (app_id, created_at_ms);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    -- Ed25519 private key, PKCS#8 v2 DER.
    private_key   BLOB  NOT NULL,
    -- Ed25519 public key, 32 bytes.
    public_key    BLOB  NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- When the key stopped signing new tokens; NULL for the current key.
    retired_at_ms BIGINT,
    -- When a retired key leaves the JWKS.
    expires_at_ms BIGINT
);

-- At most one current signing key, even when replicas rotate at once.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at_ms IS NULL)) WHERE retired_at_ms IS NULL;
