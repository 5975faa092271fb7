-- Outside writers' changes reach the cache and live clients (core migration 20261125000008).
SELECT boardsync_watch_outside('poll_options', 'poll', 'poll');
SELECT boardsync_watch_outside_child('poll_votes', 'poll', 'poll_options', 'option_id');
