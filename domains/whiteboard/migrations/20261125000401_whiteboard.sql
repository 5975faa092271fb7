-- Whiteboards: elements per board (a scope of the "whiteboard" domain). z is a
-- fractional ordering key compared bytewise (COLLATE "C"); deleted elements stay as
-- tombstones so the cache's outbox can replay any order of writes.
CREATE TABLE IF NOT EXISTS whiteboard_elements (
    id          UUID        PRIMARY KEY,
    board       TEXT        NOT NULL,
    kind        TEXT        NOT NULL,
    x           DOUBLE PRECISION NOT NULL,
    y           DOUBLE PRECISION NOT NULL,
    width       DOUBLE PRECISION NOT NULL,
    height      DOUBLE PRECISION NOT NULL,
    rotation    DOUBLE PRECISION NOT NULL,
    style       TEXT        NOT NULL,
    points      REAL[]      NOT NULL DEFAULT '{}',
    z           TEXT        COLLATE "C" NOT NULL,
    deleted     BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS whiteboard_elements_by_board ON whiteboard_elements (board);
