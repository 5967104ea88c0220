-- Channel namespaces: a channel `ns:rest` takes the options of namespace
-- `ns` of its app (herald_proto::bus::NamespaceOptions). Channels of a
-- namespace that is not configured get the defaults: no presence, no
-- history, client publishes allowed.
CREATE TABLE namespaces (
    app_id         TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- 1-64 of A-Z a-z 0-9 _ -.
    name           TEXT NOT NULL,
    presence       BOOLEAN NOT NULL,
    join_leave     BOOLEAN NOT NULL,
    client_publish BOOLEAN NOT NULL,
    -- Messages kept per channel; 0 with history_ttl_ms 0: no history.
    history_size   BIGINT NOT NULL,
    history_ttl_ms BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);
