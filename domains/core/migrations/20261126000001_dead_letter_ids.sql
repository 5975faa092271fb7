-- A short id per dead letter, for the admin API's replay and discard.
ALTER TABLE outbox_dead_letters ADD COLUMN IF NOT EXISTS id BIGSERIAL UNIQUE;
