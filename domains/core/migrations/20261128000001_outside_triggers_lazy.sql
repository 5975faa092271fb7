-- The backend's own writes (boardsync.origin = 'backend': every outbox batch) paid for
-- turning each written row into JSON before the trigger asked whether the write came
-- from outside. Now only an outside write does.
CREATE OR REPLACE FUNCTION boardsync_outside_change() RETURNS trigger AS $$
DECLARE
    changed jsonb;
BEGIN
    IF boardsync_is_outside() THEN
        changed := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
        INSERT INTO outside_changes (domain, scope, entity, op)
            VALUES (TG_ARGV[0], changed->>TG_ARGV[1], changed->>'id', TG_OP);
        PERFORM pg_notify('boardsync_changes', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION boardsync_outside_child() RETURNS trigger AS $$
DECLARE
    changed jsonb;
BEGIN
    IF boardsync_is_outside() THEN
        changed := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
        EXECUTE format('UPDATE %I SET version = version WHERE id = $1', TG_ARGV[0])
            USING (changed->>TG_ARGV[1])::uuid;
        IF TG_OP = 'UPDATE' AND (to_jsonb(OLD)->>TG_ARGV[1]) IS DISTINCT FROM (changed->>TG_ARGV[1]) THEN
            EXECUTE format('UPDATE %I SET version = version WHERE id = $1', TG_ARGV[0])
                USING (to_jsonb(OLD)->>TG_ARGV[1])::uuid;
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
