-- Pusher mode: per app, whether it speaks Pusher's protocol (Channels
-- protocol 7 on edges, Pusher's HTTP API on the control plane) and how;
-- per API key, an optional Pusher secret.

ALTER TABLE apps ADD COLUMN pusher_enabled BOOLEAN NOT NULL DEFAULT FALSE;
-- Clients may send `client-` events on private and presence channels.
ALTER TABLE apps ADD COLUMN pusher_client_events BOOLEAN NOT NULL DEFAULT FALSE;
-- Most users in one presence channel; 0: the edge's default.
ALTER TABLE apps ADD COLUMN pusher_presence_max_members BIGINT NOT NULL DEFAULT 0;
-- Largest event `data`, in bytes (the HTTP API answers 413 above it).
ALTER TABLE apps ADD COLUMN pusher_max_event_bytes BIGINT NOT NULL DEFAULT 10240;
-- Subscribers receive `pusher_internal:subscription_count` events.
ALTER TABLE apps ADD COLUMN pusher_subscription_count BOOLEAN NOT NULL DEFAULT FALSE;
-- Client events one connection may send per second; 0: the edge's default.
ALTER TABLE apps ADD COLUMN pusher_client_event_rate BIGINT NOT NULL DEFAULT 0;
-- Most events in one `batch_events` request.
ALTER TABLE apps ADD COLUMN pusher_batch_max BIGINT NOT NULL DEFAULT 10;

-- The key's Pusher secret (32 lower-case hex characters); NULL for a key
-- without one. Unlike the key's own secret it is stored in the clear:
-- Pusher's signatures are HMACs keyed with it, so whoever checks them
-- (this control plane, and edges for channel authorizations) must hold it.
ALTER TABLE api_keys ADD COLUMN pusher_secret TEXT;
