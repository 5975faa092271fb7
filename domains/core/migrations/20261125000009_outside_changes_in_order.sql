-- Outside changes commit in sequence order: a change takes a per-domain lock held
-- until its transaction ends before it takes its sequence number, so a follower that
-- read past sequence n never sees a change below n commit later (the same rule as
-- `domain_events`). Outside writers to one domain therefore commit one at a time.
CREATE OR REPLACE FUNCTION boardsync_outside_change() RETURNS trigger AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    IF boardsync_is_outside() THEN
        PERFORM pg_advisory_xact_lock(hashtext('boardsync_outside:' || TG_ARGV[0]));
        INSERT INTO outside_changes (domain, scope, entity)
            VALUES (TG_ARGV[0], changed->>TG_ARGV[1], changed->>'id');
        PERFORM pg_notify('boardsync_changes', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
