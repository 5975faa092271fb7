-- Rows changed in PostgreSQL by anyone but a boardsync backend (an operator's SQL,
-- another service) must reach the cache. A backend's connections set
-- `boardsync.origin = backend`; everyone else is an outside writer.
--
-- Each domain table gets two triggers (see the domains' migrations):
-- - boardsync_outside_version (BEFORE UPDATE): an outside writer that did not raise
--   the row's version gets it raised, so the cache's version rule takes the change;
-- - boardsync_outside_change (AFTER INSERT/UPDATE/DELETE, arguments: the domain and
--   the scope column): records the change here and notifies `boardsync_changes` with
--   the domain; each backend reads the changes past the last one it saw.
CREATE TABLE IF NOT EXISTS outside_changes (
    seq         BIGSERIAL   PRIMARY KEY,
    domain      TEXT        NOT NULL,
    scope       TEXT        NOT NULL,
    entity      TEXT        NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outside_changes_by_domain ON outside_changes (domain, seq);

CREATE OR REPLACE FUNCTION boardsync_is_outside() RETURNS boolean AS $$
    SELECT current_setting('boardsync.origin', true) IS DISTINCT FROM 'backend'
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION boardsync_outside_version() RETURNS trigger AS $$
BEGIN
    IF boardsync_is_outside() AND NEW.version <= OLD.version THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION boardsync_outside_change() RETURNS trigger AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    IF boardsync_is_outside() THEN
        INSERT INTO outside_changes (domain, scope, entity)
            VALUES (TG_ARGV[0], changed->>TG_ARGV[1], changed->>'id');
        PERFORM pg_notify('boardsync_changes', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
