import type { DomainName, Domains } from "./index.js";

/** What every domain's item has: the client keys by `id` and keeps the higher `version`. */
export interface Versioned {
  id: string;
  version: number;
  deleted?: boolean;
}

type Item<D extends DomainName> = Domains[D]["item"];
type Event<D extends DomainName> = Domains[D]["event"];

/**
 * The items an event carries, in their full new state. Typed per domain, so adding a
 * domain to `Domains` fails to compile until it is described here.
 */
const itemsOf: { [D in DomainName]: (event: Event<D>) => Item<D>[] } = {
  chat: (event) => [event.message],
  poll: (event) => [event.option],
  whiteboard: (event) => event.elements,
  // A board's items are columns and cards told apart by `kind`, as its snapshot lists them.
  kanban: (event) => ("card" in event ? [{ kind: "card", ...event.card }] : [{ kind: "column", ...event.column }]),
};

export function eventItems<D extends DomainName>(domain: D, event: Event<D>): Item<D>[] {
  const items = (itemsOf[domain] as (event: Event<D>) => Item<D>[])(event);
  return items ?? [];
}

/**
 * Domains whose snapshots leave deleted items out (their events still carry them with
 * `deleted` set): the client drops those too, so a live view equals a fresh snapshot.
 * Chat and polls keep tombstones (`deleted`, `removed`) in both.
 */
export const dropsDeleted: { [D in DomainName]: boolean } = {
  chat: false,
  poll: false,
  kanban: true,
  whiteboard: true,
};
