-- Apps deleted recently: edges must refuse the tokens minted for them
-- before the deletion until those have expired, so the JWKS lists them
-- (herald_proto::claims::Revocation) along with recently revoked keys. An
-- app created again under the same id keeps its row: only tokens issued up
-- to the deletion are refused.
CREATE TABLE deleted_apps (
    app_id        TEXT PRIMARY KEY,
    deleted_at_ms BIGINT NOT NULL
);
