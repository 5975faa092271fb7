-- Every write bumps a message's version, on either adapter; the cache's warm-up
-- never replaces a newer cached version with an older one from here.
ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
