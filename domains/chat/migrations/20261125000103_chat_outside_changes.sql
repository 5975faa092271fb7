-- Outside writers' changes reach the cache (core migration 20261125000008).
DROP TRIGGER IF EXISTS chat_messages_outside_version ON chat_messages;
CREATE TRIGGER chat_messages_outside_version BEFORE UPDATE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS chat_messages_outside_change ON chat_messages;
CREATE TRIGGER chat_messages_outside_change AFTER INSERT OR UPDATE OR DELETE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_change('chat', 'channel');
