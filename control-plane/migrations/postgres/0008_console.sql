-- The web console's sign-ins, shared by every replica. Only SHA-256 hashes
-- of session ids and login-link tokens are stored (hex), so reading the
-- database does not give a way in. Expired rows are deleted periodically.
CREATE TABLE console_sessions (
    id_hash       TEXT PRIMARY KEY,
    csrf_token    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at_ms);

-- One-time login links: deleted when used.
CREATE TABLE console_links (
    token_hash    TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX console_links_expiry ON console_links (expires_at_ms);

-- When each API key last authenticated a request (as replicas last flushed
-- it: at most a few seconds late), shown by the console's keys page. Rows
-- go with their key.
CREATE TABLE api_key_usage (
    key_id          TEXT PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    last_used_at_ms BIGINT NOT NULL
);
