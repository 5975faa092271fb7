-- Rows changed in PostgreSQL by anyone but a boardsync backend (an operator's SQL,
-- another service) must reach the cache and live clients. A backend's connections
-- set `boardsync.origin = backend`; everyone else is an outside writer. A domain
-- puts its tables under watch in its own migration:
--   SELECT boardsync_watch_outside('chat_messages', 'chat', 'channel');
--   SELECT boardsync_watch_outside_child('chat_reactions', 'chat', 'chat_messages', 'message_id');
--
-- For an outside writer, on a watched table:
-- - an update jumps the row's version by 1,000,000 (the writer's own version is
--   ignored). The cache may be ahead of PostgreSQL by writes its outbox has not
--   delivered yet; the jump makes the outside write the newest state, which the cache
--   takes, and those older writes are superseded rather than colliding with it at one
--   version (last writer wins, the outside writer last);
-- - a DELETE is refused: a running cache could not drop the row, and a later write
--   through the cache would bring it back. Mark rows deleted instead;
-- - each change is recorded here and notified on `boardsync_changes` (payload: the
--   domain); every backend reads the changes past the last one it saw;
-- - a per-domain lock, taken by a statement trigger before the statement locks any
--   row and held until commit, keeps the changes in sequence order: a backend that
--   read past sequence n never sees a change below n commit later. Outside writers
--   to one domain therefore commit one at a time.
-- A child row (a reaction, a vote) changed by an outside writer changes its parent.
CREATE TABLE IF NOT EXISTS outside_changes (
    seq         BIGSERIAL   PRIMARY KEY,
    domain      TEXT        NOT NULL,
    scope       TEXT        NOT NULL,
    entity      TEXT        NOT NULL,
    op          TEXT        NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outside_changes_by_domain ON outside_changes (domain, seq);

CREATE OR REPLACE FUNCTION boardsync_is_outside() RETURNS boolean AS $$
    SELECT current_setting('boardsync.origin', true) IS DISTINCT FROM 'backend'
$$ LANGUAGE sql STABLE;

-- BEFORE UPDATE OR DELETE, per row.
CREATE OR REPLACE FUNCTION boardsync_outside_version() RETURNS trigger AS $$
BEGIN
    IF boardsync_is_outside() THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'boardsync: mark rows of % deleted instead of deleting them', TG_TABLE_NAME
                USING HINT = 'a running cache keeps a deleted row; set its deleted/removed flag';
        END IF;
        NEW.version := OLD.version + 1000000;
        RETURN NEW;
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$ LANGUAGE plpgsql;

-- BEFORE each statement; argument: the domain.
CREATE OR REPLACE FUNCTION boardsync_outside_order() RETURNS trigger AS $$
BEGIN
    IF boardsync_is_outside() THEN
        PERFORM pg_advisory_xact_lock(hashtext('boardsync_outside:' || TG_ARGV[0]));
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- AFTER each row; arguments: the domain and the scope column.
CREATE OR REPLACE FUNCTION boardsync_outside_change() RETURNS trigger AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    IF boardsync_is_outside() THEN
        INSERT INTO outside_changes (domain, scope, entity, op)
            VALUES (TG_ARGV[0], changed->>TG_ARGV[1], changed->>'id', TG_OP);
        PERFORM pg_notify('boardsync_changes', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- AFTER each child row; arguments: the parent table and the child's parent column.
CREATE OR REPLACE FUNCTION boardsync_outside_child() RETURNS trigger AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    IF boardsync_is_outside() THEN
        EXECUTE format('UPDATE %I SET version = version WHERE id = $1', TG_ARGV[0])
            USING (changed->>TG_ARGV[1])::uuid;
        -- A child moved to another parent changes the one it left too.
        IF TG_OP = 'UPDATE' AND (to_jsonb(OLD)->>TG_ARGV[1]) IS DISTINCT FROM (changed->>TG_ARGV[1]) THEN
            EXECUTE format('UPDATE %I SET version = version WHERE id = $1', TG_ARGV[0])
                USING (to_jsonb(OLD)->>TG_ARGV[1])::uuid;
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- Puts a domain's table under watch (its rows have `id` and `version`).
CREATE OR REPLACE FUNCTION boardsync_watch_outside(tbl text, domain text, scope_column text) RETURNS void AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_outside_order', tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I
        FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order(%L)', tbl || '_outside_order', tbl, domain);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_outside_version', tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
        FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version()', tbl || '_outside_version', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_outside_change', tbl);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I
        FOR EACH ROW EXECUTE FUNCTION boardsync_outside_change(%L, %L)', tbl || '_outside_change', tbl, domain, scope_column);
END
$$ LANGUAGE plpgsql;

-- Puts a child table under watch: its changes change the parent row.
CREATE OR REPLACE FUNCTION boardsync_watch_outside_child(tbl text, domain text, parent text, parent_column text)
RETURNS void AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_outside_order', tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %I
        FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order(%L)', tbl || '_outside_order', tbl, domain);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_outside_child', tbl);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I
        FOR EACH ROW EXECUTE FUNCTION boardsync_outside_child(%L, %L)', tbl || '_outside_child', tbl, parent, parent_column);
END
$$ LANGUAGE plpgsql;
