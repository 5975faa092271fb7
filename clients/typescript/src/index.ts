/**
 * boardsync's client: the runtime (`BoardsyncClient`, live scopes; see `client.ts`)
 * and its types, generated from the server's own Rust types (through
 * `boardsync openapi`), so they cannot drift: `scripts/test` fails when
 * `openapi.json` or `src/generated/api.ts` is stale. Regenerate with
 * `scripts/generate-client`.
 */
import type { components, paths } from "./generated/api.js";

export type { components, paths };

type Schemas = components["schemas"];

/** Every error the API answers, over HTTP and in live replies. */
export type ErrorBody = Schemas["ErrorBody"];
export type Durability = Schemas["Durability"];
/** Who is connected to a scope, as live presence frames carry it. */
export type Peer = Schemas["Peer"];
/** What a client sends on a live socket besides commands. */
export type ClientSignal = Schemas["ClientSignal"];

/** Per domain: what a client sends (over HTTP and on the live socket), and what it gets. */
export interface Domains {
  chat: {
    command: Schemas["ChatRequest"];
    clientFrame: Schemas["ChatClientFrame"];
    event: Schemas["ChatEvent"];
    item: Schemas["Message"];
    serverFrame: Schemas["ChatEventFrame"];
  };
  kanban: {
    command: Schemas["KanbanRequest"];
    clientFrame: Schemas["KanbanClientFrame"];
    event: Schemas["KanbanEvent"];
    item: Schemas["BoardItem"];
    serverFrame: Schemas["KanbanEventFrame"];
  };
  poll: {
    command: Schemas["PollRequest"];
    clientFrame: Schemas["PollClientFrame"];
    event: Schemas["PollEvent"];
    item: Schemas["PollOption"];
    serverFrame: Schemas["PollEventFrame"];
  };
  whiteboard: {
    command: Schemas["WhiteboardRequest"];
    clientFrame: Schemas["WhiteboardClientFrame"];
    event: Schemas["WhiteboardEvent"];
    item: Schemas["Element"];
    serverFrame: Schemas["WhiteboardEventFrame"];
  };
}

export type DomainName = keyof Domains;

/** A page of a scope's snapshot. */
export interface Page<D extends DomainName> {
  items: Domains[D]["item"][];
  has_more: boolean;
  next_before: string | null;
}

export * from "./client.js";
