-- Outside writers, second version (see 20261125000008):
-- - An outside update jumps the row's version by 1,000,000 (the writer's own version
--   is ignored). The cache may be ahead of PostgreSQL by writes its outbox has not
--   delivered yet; the jump makes the outside write the newest state, which the cache
--   takes, and those older writes are superseded rather than colliding with it at
--   one version (last writer wins, the outside writer last).
-- - Outside writers may not DELETE rows: a running cache could not drop them, and a
--   later write through the cache would bring them back. Mark rows deleted instead.
-- - The lock that keeps outside changes in sequence order is taken by a statement
--   trigger before the statement locks any row (boardsync_outside_order), so it
--   cannot deadlock with row locks taken earlier in the statement.
-- - Each change names its operation, so live clients hear of an inserted row as new.
ALTER TABLE outside_changes ADD COLUMN IF NOT EXISTS op TEXT NOT NULL DEFAULT 'UPDATE';

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

CREATE OR REPLACE FUNCTION boardsync_outside_order() RETURNS trigger AS $$
BEGIN
    IF boardsync_is_outside() THEN
        PERFORM pg_advisory_xact_lock(hashtext('boardsync_outside:' || TG_ARGV[0]));
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION boardsync_outside_change() RETURNS trigger AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    IF boardsync_is_outside() THEN
        -- Already held since the statement began (boardsync_outside_order); taken
        -- again for tables set up before that trigger existed.
        PERFORM pg_advisory_xact_lock(hashtext('boardsync_outside:' || TG_ARGV[0]));
        INSERT INTO outside_changes (domain, scope, entity, op)
            VALUES (TG_ARGV[0], changed->>TG_ARGV[1], changed->>'id', TG_OP);
        PERFORM pg_notify('boardsync_changes', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- A child row (a reaction, a vote) changed by an outside writer changes its parent:
-- its version jumps and the change is recorded. Arguments: the parent table and the
-- child's column naming the parent.
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
