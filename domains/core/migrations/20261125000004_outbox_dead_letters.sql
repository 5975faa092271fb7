-- Outbox entries PostgreSQL refused on their own (e.g. a constraint the cache does not
-- know): kept here with the error instead of stalling every write behind them.
CREATE TABLE IF NOT EXISTS outbox_dead_letters (
    domain       TEXT        NOT NULL,
    cache_epoch  BIGINT      NOT NULL,
    seq          BIGINT      NOT NULL,
    entity       TEXT        NOT NULL,
    kind         TEXT        NOT NULL,
    payload      TEXT        NOT NULL,
    request_id   TEXT        NOT NULL,
    error        TEXT        NOT NULL,
    failed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, cache_epoch, seq)
);
