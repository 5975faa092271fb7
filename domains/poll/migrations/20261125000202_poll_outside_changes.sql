-- Outside writers' changes reach the cache (core migration 20261125000008).
DROP TRIGGER IF EXISTS poll_options_outside_version ON poll_options;
CREATE TRIGGER poll_options_outside_version BEFORE UPDATE ON poll_options
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS poll_options_outside_change ON poll_options;
CREATE TRIGGER poll_options_outside_change AFTER INSERT OR UPDATE OR DELETE ON poll_options
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_change('poll', 'poll');
