-- The cache shard each scope lives on (`spacetimedb.shards`), chosen when the scope
-- is created and changed only by an operator's move. NULL: the first shard (scopes
-- created before there were more).
ALTER TABLE scopes ADD COLUMN IF NOT EXISTS shard TEXT;
