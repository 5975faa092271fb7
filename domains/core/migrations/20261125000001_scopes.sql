-- Scopes are the units of collaboration (a chat channel, a board). Their `config`
-- holds per-scope settings such as warm-up overrides; it is validated by the backend.
CREATE TABLE IF NOT EXISTS scopes (
    domain      TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    config      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, key)
);
