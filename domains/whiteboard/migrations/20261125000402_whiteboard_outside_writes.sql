-- Outside writers' changes reach the cache and live clients (core migration 20261125000008).
SELECT boardsync_watch_outside('whiteboard_elements', 'whiteboard', 'board');
