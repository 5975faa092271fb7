-- Outside writers (core migration 20261125000010): deletes refused, order lock per statement.
DROP TRIGGER IF EXISTS whiteboard_elements_outside_version ON whiteboard_elements;
CREATE TRIGGER whiteboard_elements_outside_version BEFORE UPDATE OR DELETE ON whiteboard_elements
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS whiteboard_elements_outside_order ON whiteboard_elements;
CREATE TRIGGER whiteboard_elements_outside_order BEFORE INSERT OR UPDATE OR DELETE ON whiteboard_elements
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('whiteboard');
