-- Who changed each option last (`author` is who added it).
ALTER TABLE poll_options ADD COLUMN IF NOT EXISTS updated_by TEXT NOT NULL DEFAULT '';
UPDATE poll_options SET updated_by = author WHERE updated_by = '';
