-- A purge mark outlives the scope's re-creation (recreated_at), so a write committed
-- in the cache before the purge still finds it and is dropped, while writes to the new
-- scope (and, after a later plain DELETE, writes made before that delete) land.
ALTER TABLE purged_scopes ADD COLUMN IF NOT EXISTS recreated_at TIMESTAMPTZ;
-- Dead letters name their scope (when their payload is readable), so a purge deletes
-- them with the scope's items.
ALTER TABLE outbox_dead_letters ADD COLUMN IF NOT EXISTS scope TEXT;
CREATE INDEX IF NOT EXISTS outbox_dead_letters_by_scope ON outbox_dead_letters (domain, scope);
