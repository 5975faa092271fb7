import { BoardsyncError, asBoardsyncError, fromResponse } from "./errors.js";

/** A WebSocket constructor: the browser's, Node's (22+, or 20 with `--experimental-websocket`), or any compatible one. */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface TransportOptions {
  baseUrl: string;
  token: string | (() => string | Promise<string>);
  WebSocket?: WebSocketConstructor;
  fetch?: typeof fetch;
}

/**
 * HTTP requests and live socket URLs for one server: shared by the client's one-off
 * calls and every live scope it opens, so a token function is the only thing that
 * decides which token goes out.
 */
export class Transport {
  private readonly base: string;
  private readonly tokenSource: TransportOptions["token"];
  private readonly fetchImpl?: typeof fetch;
  private readonly WebSocketImpl?: WebSocketConstructor;

  constructor(options: TransportOptions) {
    this.base = options.baseUrl.replace(/\/+$/, "");
    this.tokenSource = options.token;
    // Bound: browsers refuse `fetch` called as a method of another object.
    this.fetchImpl = options.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : undefined);
    this.WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  }

  /** Whether a fresh token can be had (a function): an expired one is then worth a reconnect. */
  get refreshesTokens(): boolean {
    return typeof this.tokenSource === "function";
  }

  async token(): Promise<string> {
    const source = this.tokenSource;
    try {
      return typeof source === "function" ? await source() : source;
    } catch (error) {
      throw asBoardsyncError(error, "no_token");
    }
  }

  /** One API call; resolves with the JSON body, rejects with a BoardsyncError. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    if (!this.fetchImpl) throw new BoardsyncError("no_fetch", "no fetch implementation: pass one as `fetch`");
    const headers: Record<string, string> = { authorization: `Bearer ${await this.token()}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw asBoardsyncError(error, "offline");
    }
    if (!response.ok) throw await fromResponse(response);
    if (response.status === 204) return undefined as T;
    try {
      return (await response.json()) as T;
    } catch (error) {
      throw new BoardsyncError("bad_response", `the server's answer is not JSON: ${String(error)}`, response.status);
    }
  }

  /**
   * Opens a live socket. The token goes in the query: browsers cannot set a
   * WebSocket's headers, and the live route is the one place the server reads it there.
   * Synchronous once the URL is known: the caller must set its handlers in the same
   * tick, since Node's WebSocket may report a refused connection before the next one.
   */
  openSocket(url: string): WebSocket {
    if (!this.WebSocketImpl) {
      throw new BoardsyncError("no_websocket", "no WebSocket implementation: pass one as `WebSocket` (Node 20: --experimental-websocket)");
    }
    return new this.WebSocketImpl(url);
  }

  /** The live socket's URL for `path`, with a token. */
  async socketUrl(path: string): Promise<string> {
    const token = await this.token();
    return `${this.socketBase()}${path}?token=${encodeURIComponent(token)}`;
  }

  /** ws:// or wss:// of the base URL; with an empty base URL, of the page's own origin. */
  private socketBase(): string {
    let base = this.base;
    if (!base) {
      const location = (globalThis as { location?: { origin: string } }).location;
      if (!location) throw new BoardsyncError("no_base_url", "baseUrl is empty and there is no page location to derive it from");
      base = location.origin;
    }
    return base.replace(/^http/i, "ws");
  }
}

/** `/api/{domain}/{scope}` with each part escaped. */
export function scopePath(domain: string, scope: string): string {
  return `/api/${encodeURIComponent(domain)}/${encodeURIComponent(scope)}`;
}
