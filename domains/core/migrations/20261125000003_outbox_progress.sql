-- Exactly-once effect for the cache's outbox: each batch is applied in one
-- transaction that also advances the last applied sequence of that cache incarnation
-- (the epoch its module set in `init`); entries at or below it are skipped.
CREATE TABLE IF NOT EXISTS outbox_progress (
    domain            TEXT        NOT NULL,
    cache_epoch       BIGINT      NOT NULL,
    last_applied_seq  BIGINT      NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, cache_epoch)
);
