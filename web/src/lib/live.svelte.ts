/**
 * A LiveScope of the client as Svelte state: every change the scope reports is
 * copied (once per microtask) into plain arrays the components read.
 */
import type { ConnectionStatus, DomainName, Domains, LiveScope, Peer } from "@boardsync/client";
import { client } from "./api";

/** The open scopes, so leaving the page can warn while any has commands queued or in flight. */
const opened = new Set<LiveState<DomainName>>();

if (typeof window !== "undefined") {
  window.addEventListener("beforeunload", (event) => {
    if (![...opened].some((state) => state.live.queued > 0)) return;
    event.preventDefault();
    event.returnValue = ""; // older browsers show the prompt only with this
  });
}

export class LiveState<D extends DomainName> {
  readonly live: LiveScope<D>;
  items = $state.raw<Domains[D]["item"][]>([]);
  pending = $state.raw<ReadonlySet<string>>(new Set());
  presence = $state.raw<Peer[]>([]);
  status = $state<ConnectionStatus>("connecting");
  error = $state.raw<{ code: string; message: string; status: number } | null>(null);
  hasMore = $state(false);
  #unsubscribe: () => void;
  #scheduled = false;
  // What was copied last: the client keeps the same objects until they change, so an
  // emit about presence or status does not rebuild (and re-render) every item.
  #items: unknown = null;
  #pending: unknown = null;
  #presence: unknown = null;

  constructor(domain: D, scope: string) {
    this.live = client.open(domain, scope);
    this.#unsubscribe = this.live.subscribe(() => this.#schedule());
    this.#copy();
    opened.add(this as unknown as LiveState<DomainName>);
  }

  #schedule() {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#copy();
    });
  }

  #copy() {
    const live = this.live;
    if (live.items !== this.#items) {
      this.#items = live.items;
      this.items = [...live.items.values()];
    }
    if (live.pending !== this.#pending) {
      this.#pending = live.pending;
      this.pending = new Set(live.pending);
    }
    if (live.presence !== this.#presence) {
      this.#presence = live.presence;
      this.presence = [...live.presence.values()];
    }
    this.status = live.status;
    const err = live.error;
    this.error = err ? { code: err.code, message: err.message, status: err.status } : null;
    this.hasMore = live.hasMore;
  }

  /** Sends a command; `optimistic` shows at once (several items for a whiteboard move). */
  send(command: Domains[D]["command"], optimistic?: Domains[D]["item"] | Domains[D]["item"][]): Promise<Domains[D]["event"]> {
    return this.live.send(command, optimistic ? { optimistic } : undefined);
  }

  close() {
    opened.delete(this as unknown as LiveState<DomainName>);
    this.#unsubscribe();
    this.live.close();
  }
}

/** The `presence` state of a peer as an object ({} when unset or not an object). */
export function peerState(peer: Peer): Record<string, any> {
  const state = peer.state as unknown;
  return state && typeof state === "object" && !Array.isArray(state) ? (state as Record<string, any>) : {};
}
