-- The PostgreSQL adapters' live-event log: each write appends its event in the same
-- transaction and notifies `boardsync_events`; listeners read events past the last
-- sequence they saw, so a missed notification is caught up by the next poll.
CREATE TABLE IF NOT EXISTS domain_events (
    seq         BIGSERIAL   PRIMARY KEY,
    domain      TEXT        NOT NULL,
    scope       TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS domain_events_by_domain ON domain_events (domain, seq);
