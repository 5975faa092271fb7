-- Kanban: columns and cards per board (a scope of the "kanban" domain). Positions are
-- fractional ordering keys compared bytewise (COLLATE "C"); deleted items stay as
-- tombstones so the cache's outbox can replay any order of writes.
CREATE TABLE IF NOT EXISTS kanban_columns (
    id          UUID        PRIMARY KEY,
    board       TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    position    TEXT        COLLATE "C" NOT NULL,
    wip_limit   INTEGER,
    deleted     BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS kanban_columns_by_board ON kanban_columns (board);

CREATE TABLE IF NOT EXISTS kanban_cards (
    id           UUID        PRIMARY KEY,
    board        TEXT        NOT NULL,
    column_id    UUID        NOT NULL,
    title        TEXT        NOT NULL,
    description  TEXT        NOT NULL DEFAULT '',
    assignees    TEXT[]      NOT NULL DEFAULT '{}',
    labels       TEXT[]      NOT NULL DEFAULT '{}',
    position     TEXT        COLLATE "C" NOT NULL,
    deleted      BOOLEAN     NOT NULL DEFAULT false,
    created_at   TIMESTAMPTZ NOT NULL,
    version      BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS kanban_cards_by_board ON kanban_cards (board);
