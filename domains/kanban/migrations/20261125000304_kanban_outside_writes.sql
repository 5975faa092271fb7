-- Outside writers (core migration 20261125000010): deletes refused, order lock per statement.
DROP TRIGGER IF EXISTS kanban_columns_outside_version ON kanban_columns;
CREATE TRIGGER kanban_columns_outside_version BEFORE UPDATE OR DELETE ON kanban_columns
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS kanban_columns_outside_order ON kanban_columns;
CREATE TRIGGER kanban_columns_outside_order BEFORE INSERT OR UPDATE OR DELETE ON kanban_columns
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('kanban');
DROP TRIGGER IF EXISTS kanban_cards_outside_version ON kanban_cards;
CREATE TRIGGER kanban_cards_outside_version BEFORE UPDATE OR DELETE ON kanban_cards
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS kanban_cards_outside_order ON kanban_cards;
CREATE TRIGGER kanban_cards_outside_order BEFORE INSERT OR UPDATE OR DELETE ON kanban_cards
    FOR EACH STATEMENT EXECUTE FUNCTION boardsync_outside_order('kanban');
