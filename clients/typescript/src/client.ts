/**
 * The boardsync client: one-off HTTP calls, and live scopes (snapshot + WebSocket)
 * that stay current across reconnects and resyncs. No dependencies: it runs on the
 * platform's `fetch` and `WebSocket` (browsers, Node 22+, Node 20 with
 * `--experimental-websocket`), or on implementations passed in.
 */
import type { DomainName, Domains, Durability, Page, paths } from "./index.js";
import { LiveScopeImpl, type LiveScope, type OpenOptions } from "./live.js";
import { Transport, scopePath, type WebSocketConstructor } from "./transport.js";

export { BoardsyncError } from "./errors.js";
export type { ConnectionStatus, LiveScope, OpenOptions, SendOptions } from "./live.js";
export type { WebSocketConstructor } from "./transport.js";

export interface ClientOptions {
  /** "http://127.0.0.1:8080", or "" for the page's own origin (the demo apps). */
  baseUrl: string;
  /** A bearer token, or a function giving one (called again on each reconnect). */
  token: string | (() => string | Promise<string>);
  /** Defaults to globalThis.WebSocket / globalThis.fetch (browsers; Node 22+, or Node 20 with --experimental-websocket). */
  WebSocket?: WebSocketConstructor;
  fetch?: typeof fetch;
  /** Reconnect backoff: full jitter between initialMs and maxMs, doubling. Defaults 250 and 10000. */
  reconnect?: { initialMs?: number; maxMs?: number };
  /** How long a live command waits for its reply once sent (time offline does not count). Default 15000. */
  commandTimeoutMs?: number;
  /** How long a new live socket may take to say `ready` before it is given up. Default 10000. */
  readyTimeoutMs?: number;
}

/** The scopes of a domain a caller may see, with their role (`GET /api/{domain}`), paged by key. */
export type ScopeList = paths["/api/chat"]["get"]["responses"][200]["content"]["application/json"];

export class BoardsyncClient {
  private readonly transport: Transport;
  private readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.options = options;
    this.transport = new Transport(options);
  }

  /** One page of a scope's snapshot; pass a page's `next_before` as `before` for the next. */
  snapshot<D extends DomainName>(domain: D, scope: string, page: { limit?: number; before?: string } = {}): Promise<Page<D>> {
    const query = new URLSearchParams();
    if (page.limit !== undefined) query.set("limit", String(page.limit));
    if (page.before !== undefined) query.set("before", page.before);
    const q = query.toString();
    return this.transport.request("GET", scopePath(domain, scope) + (q ? `?${q}` : ""));
  }

  /** One command over HTTP. Resolves with the server's answer body (the event), rejects with BoardsyncError. */
  command<D extends DomainName>(
    domain: D,
    scope: string,
    command: Domains[D]["command"],
    options: { durability?: Durability } = {},
  ): Promise<Domains[D]["event"]> {
    const body = options.durability ? { ...command, durability: options.durability } : command;
    return this.transport.request("POST", scopePath(domain, scope), body);
  }

  /** The scopes of a domain the caller may see. */
  scopes(domain: DomainName, page: { limit?: number; after?: string } = {}): Promise<ScopeList> {
    const query = new URLSearchParams();
    if (page.limit !== undefined) query.set("limit", String(page.limit));
    if (page.after !== undefined) query.set("after", page.after);
    const q = query.toString();
    return this.transport.request("GET", `/api/${encodeURIComponent(domain)}${q ? `?${q}` : ""}`);
  }

  /** A live view of one scope: snapshot + events, kept current across reconnects and resyncs. */
  open<D extends DomainName>(domain: D, scope: string, options?: OpenOptions): LiveScope<D> {
    const reconnect = this.options.reconnect ?? {};
    return new LiveScopeImpl(
      this.transport,
      domain,
      scope,
      {
        initialMs: reconnect.initialMs ?? 250,
        maxMs: reconnect.maxMs ?? 10_000,
        commandTimeoutMs: this.options.commandTimeoutMs ?? 15_000,
        readyTimeoutMs: this.options.readyTimeoutMs ?? 10_000,
      },
      options,
    );
  }
}

/**
 * A fresh client-made id (UUID v4) for create commands. `crypto.randomUUID` exists
 * only in secure contexts (https, localhost), so plain-http pages fall back to
 * `getRandomValues`, which works everywhere.
 */
export function newId(): string {
  const crypto = (globalThis as { crypto?: Crypto }).crypto;
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (crypto?.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
