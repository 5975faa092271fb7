-- Outside writers' changes reach the cache and live clients (core migration 20261125000008).
SELECT boardsync_watch_outside('kanban_columns', 'kanban', 'board');
SELECT boardsync_watch_outside('kanban_cards', 'kanban', 'board');
