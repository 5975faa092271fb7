-- Scopes whose items were purged (DELETE /api/admin/scopes/{d}/{s}?purge=true). A
-- write of the scope still on its way (an outbox entry read before the purge, a
-- PostgreSQL-adapter command authorized before it) finds the mark under the scope's
-- advisory lock and is dropped while the scope stays deleted. `cache_cleared` says
-- the cache forgot the scope too; until then the scope cannot be created again.
CREATE TABLE IF NOT EXISTS purged_scopes (
    domain         TEXT        NOT NULL,
    scope          TEXT        NOT NULL,
    purged_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    cache_cleared  BOOLEAN     NOT NULL DEFAULT false,
    PRIMARY KEY (domain, scope)
);
