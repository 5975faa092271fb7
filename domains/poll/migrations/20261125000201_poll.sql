-- Polls: options per poll (a scope of the "poll" domain) and who voted for each.
CREATE TABLE IF NOT EXISTS poll_options (
    id          UUID        PRIMARY KEY,
    poll        TEXT        NOT NULL,
    label       TEXT        NOT NULL,
    author      TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    removed     BOOLEAN     NOT NULL DEFAULT false,
    version     BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS poll_options_by_poll ON poll_options (poll, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS poll_votes (
    option_id   UUID        NOT NULL REFERENCES poll_options (id) ON DELETE CASCADE,
    user_id     TEXT        NOT NULL,
    position    INTEGER     NOT NULL,
    PRIMARY KEY (option_id, user_id)
);
