-- Outside writers (core migration 20261125000010): deletes refused, order lock per statement.
DROP TRIGGER IF EXISTS poll_options_outside_version ON poll_options;
CREATE TRIGGER poll_options_outside_version BEFORE UPDATE OR DELETE ON poll_options
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS poll_options_outside_order ON poll_options;
CREATE TRIGGER poll_options_outside_order BEFORE INSERT OR UPDATE OR DELETE ON poll_options
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('poll');
DROP TRIGGER IF EXISTS poll_votes_outside_child ON poll_votes;
CREATE TRIGGER poll_votes_outside_child AFTER INSERT OR UPDATE OR DELETE ON poll_votes
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_child('poll_options', 'option_id');
DROP TRIGGER IF EXISTS poll_votes_outside_order ON poll_votes;
CREATE TRIGGER poll_votes_outside_order BEFORE INSERT OR UPDATE OR DELETE ON poll_votes
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('poll');
