-- Outside writers' changes reach the cache and live clients (core migration 20261125000008).
SELECT boardsync_watch_outside('chat_messages', 'chat', 'channel');
SELECT boardsync_watch_outside_child('chat_reactions', 'chat', 'chat_messages', 'message_id');
