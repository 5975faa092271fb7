-- Chat: messages per channel (a scope of the "chat" domain) and their reactions.
-- Message ids come from clients, so a retried send is idempotent.
CREATE TABLE IF NOT EXISTS chat_messages (
    id          UUID        PRIMARY KEY,
    channel     TEXT        NOT NULL,
    author      TEXT        NOT NULL,
    text        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    edited_at   TIMESTAMPTZ,
    deleted     BOOLEAN     NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS chat_messages_by_channel ON chat_messages (channel, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS chat_reactions (
    message_id  UUID        NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    user_id     TEXT        NOT NULL,
    emoji       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, emoji)
);
