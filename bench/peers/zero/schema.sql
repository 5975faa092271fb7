CREATE TABLE IF NOT EXISTS message (
  id         text PRIMARY KEY,
  channel    text NOT NULL,
  author     text NOT NULL,
  text       text NOT NULL,
  created_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS message_channel_idx ON message (channel, created_at);
