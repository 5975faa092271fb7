-- Who created each column and card, and who changed it last.
ALTER TABLE kanban_columns ADD COLUMN IF NOT EXISTS created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE kanban_columns ADD COLUMN IF NOT EXISTS updated_by TEXT NOT NULL DEFAULT '';
ALTER TABLE kanban_cards ADD COLUMN IF NOT EXISTS created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE kanban_cards ADD COLUMN IF NOT EXISTS updated_by TEXT NOT NULL DEFAULT '';
