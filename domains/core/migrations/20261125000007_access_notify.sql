-- Every change of who may see a scope (its members, or its config) notifies
-- `boardsync_access` with "domain/scope", so every backend forgets what it kept of
-- that scope's access and re-checks its live sockets: changes made on another node,
-- or with plain SQL, take effect everywhere.
CREATE OR REPLACE FUNCTION boardsync_access_changed() RETURNS trigger AS $$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    PERFORM pg_notify('boardsync_access',
        (changed->>'domain') || '/' || COALESCE(changed->>'scope', changed->>'key'));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS scope_members_access ON scope_members;
CREATE TRIGGER scope_members_access AFTER INSERT OR UPDATE OR DELETE ON scope_members
    FOR EACH ROW EXECUTE FUNCTION boardsync_access_changed();

DROP TRIGGER IF EXISTS scopes_access ON scopes;
CREATE TRIGGER scopes_access AFTER UPDATE OR DELETE ON scopes
    FOR EACH ROW EXECUTE FUNCTION boardsync_access_changed();
