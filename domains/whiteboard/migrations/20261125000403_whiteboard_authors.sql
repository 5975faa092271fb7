-- Who created each element (it and the board's owners may lock it), who changed it
-- last, and whether it is locked.
ALTER TABLE whiteboard_elements ADD COLUMN IF NOT EXISTS created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE whiteboard_elements ADD COLUMN IF NOT EXISTS updated_by TEXT NOT NULL DEFAULT '';
ALTER TABLE whiteboard_elements ADD COLUMN IF NOT EXISTS locked BOOLEAN NOT NULL DEFAULT false;
