-- Outside writers' changes reach the cache (core migration 20261125000008).
DROP TRIGGER IF EXISTS whiteboard_elements_outside_version ON whiteboard_elements;
CREATE TRIGGER whiteboard_elements_outside_version BEFORE UPDATE ON whiteboard_elements
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS whiteboard_elements_outside_change ON whiteboard_elements;
CREATE TRIGGER whiteboard_elements_outside_change AFTER INSERT OR UPDATE OR DELETE ON whiteboard_elements
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_change('whiteboard', 'board');
