-- Apps an administrator disabled: since when and why (NULL: enabled).
ALTER TABLE apps ADD COLUMN disabled_at_ms BIGINT;
ALTER TABLE apps ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';
-- The tombstones that refuse an app's older tokens are written when it is
-- disabled too; this says which it was, so edges can say why.
ALTER TABLE deleted_apps ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
