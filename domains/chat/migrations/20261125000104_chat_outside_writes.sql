-- Outside writers (core migration 20261125000010): deletes refused, order lock per statement.
DROP TRIGGER IF EXISTS chat_messages_outside_version ON chat_messages;
CREATE TRIGGER chat_messages_outside_version BEFORE UPDATE OR DELETE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS chat_messages_outside_order ON chat_messages;
CREATE TRIGGER chat_messages_outside_order BEFORE INSERT OR UPDATE OR DELETE ON chat_messages
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('chat');
DROP TRIGGER IF EXISTS chat_reactions_outside_child ON chat_reactions;
CREATE TRIGGER chat_reactions_outside_child AFTER INSERT OR UPDATE OR DELETE ON chat_reactions
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_child('chat_messages', 'message_id');
DROP TRIGGER IF EXISTS chat_reactions_outside_order ON chat_reactions;
CREATE TRIGGER chat_reactions_outside_order BEFORE INSERT OR UPDATE OR DELETE ON chat_reactions
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('chat');
