-- Who may see and change a scope: its members, each with a role. A scope's config
-- may open it to every authenticated user instead (`access`).
CREATE TABLE IF NOT EXISTS scope_members (
    domain     TEXT        NOT NULL,
    scope      TEXT        NOT NULL,
    user_id    TEXT        NOT NULL,
    role       TEXT        NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, scope, user_id),
    FOREIGN KEY (domain, scope) REFERENCES scopes (domain, key) ON DELETE CASCADE
);
