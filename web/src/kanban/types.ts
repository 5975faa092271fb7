import type { Domains } from "@boardsync/client";

export type BoardItem = Domains["kanban"]["item"];
export type Column = Extract<BoardItem, { kind: "column" }>;
export type Card = Extract<BoardItem, { kind: "card" }>;
export type KanbanCommand = Domains["kanban"]["command"];
