-- The app's Pusher app id: the number Pusher's server libraries put in
-- `/apps/{app_id}/…` of the Pusher HTTP API (1-18 decimal digits, kept as
-- written). NULL until Pusher mode is turned on or an id is set; unique
-- across apps (NULLs do not collide).
ALTER TABLE apps ADD COLUMN pusher_app_id TEXT;
CREATE UNIQUE INDEX apps_pusher_app_id ON apps (pusher_app_id);
