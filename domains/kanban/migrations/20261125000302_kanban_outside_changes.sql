-- Outside writers' changes reach the cache (core migration 20261125000008).
DROP TRIGGER IF EXISTS kanban_columns_outside_version ON kanban_columns;
CREATE TRIGGER kanban_columns_outside_version BEFORE UPDATE ON kanban_columns
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS kanban_columns_outside_change ON kanban_columns;
CREATE TRIGGER kanban_columns_outside_change AFTER INSERT OR UPDATE OR DELETE ON kanban_columns
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_change('kanban', 'board');
DROP TRIGGER IF EXISTS kanban_cards_outside_version ON kanban_cards;
CREATE TRIGGER kanban_cards_outside_version BEFORE UPDATE ON kanban_cards
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_version();
DROP TRIGGER IF EXISTS kanban_cards_outside_change ON kanban_cards;
CREATE TRIGGER kanban_cards_outside_change AFTER INSERT OR UPDATE OR DELETE ON kanban_cards
    FOR EACH ROW EXECUTE FUNCTION boardsync_outside_change('kanban', 'board');
