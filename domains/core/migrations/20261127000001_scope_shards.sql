-- The cache shard each scope lives on (`spacetimedb.shards`), chosen when the scope
-- is created and changed only by an operator's move. NULL: the first shard (scopes
-- created before there were more). `placed_at` changes with every move: a node's
-- record that the scope is warm holds only for the placement it was warmed in.
ALTER TABLE scopes ADD COLUMN IF NOT EXISTS shard TEXT;
ALTER TABLE scopes ADD COLUMN IF NOT EXISTS placed_at TIMESTAMPTZ NOT NULL DEFAULT now();
