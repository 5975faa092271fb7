/**
 * Test support against a real server (BOARDSYNC_URL, default http://127.0.0.1:8080):
 * tokens, scopes and members made through the API, unique names per test so tests
 * never share state, and a WebSocket the tests can cut.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { BoardsyncClient, type ClientOptions, type DomainName, type LiveScope } from "../src/index.js";

export const BASE = (process.env.BOARDSYNC_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
const REPO = fileURLToPath(new URL("../../../../", import.meta.url));

/** A name no other test (or earlier run) uses: scopes and users are made fresh. */
/** The adapter the server under test runs its chat domain on. */
export async function adapter(): Promise<string> {
  const health = (await (await fetch(`${BASE}/health`)).json()) as { domains: { chat: { adapter: string } } };
  return health.domains.chat.adapter;
}

export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;
}

const tokens = new Map<string, Promise<string>>();

/** A token for any user: the dev login route, or the command line where it is off or missing. */
export function token(user: string, admin = false): Promise<string> {
  const key = `${user}:${admin}`;
  let minted = tokens.get(key);
  if (!minted) {
    minted = mint(user, admin);
    tokens.set(key, minted);
  }
  return minted;
}

async function mint(user: string, admin: boolean): Promise<string> {
  const response = await fetch(`${BASE}/api/dev/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user, admin }),
  });
  if (response.ok) return ((await response.json()) as { token: string }).token;
  const args = ["scripts/boardsync", "token", "--user", user, ...(admin ? ["--admin"] : [])];
  return execFileSync("bash", args, { cwd: REPO, encoding: "utf8" }).trim();
}

export async function api(method: string, path: string, body?: unknown, user = "test-admin"): Promise<unknown> {
  const response = await fetch(BASE + path, {
    method,
    headers: {
      authorization: `Bearer ${await token(user, user === "test-admin")}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** A fresh scope with these members (user -> role); returns its key. */
export async function scopeWith(domain: DomainName, members: Record<string, "viewer" | "editor" | "owner">): Promise<string> {
  const scope = unique("t");
  await api("PUT", `/api/admin/scopes/${domain}/${scope}`, { name: `test ${scope}`, config: {} });
  for (const [user, role] of Object.entries(members)) {
    await api("PUT", `/api/admin/scopes/${domain}/${scope}/members/${encodeURIComponent(user)}`, { role });
  }
  return scope;
}

export function client(user: string, options: Partial<ClientOptions> = {}): BoardsyncClient {
  return new BoardsyncClient({
    baseUrl: BASE,
    token: () => token(user),
    // Short waits: tests reconnect often.
    reconnect: { initialMs: 50, maxMs: 500 },
    ...options,
  });
}

/** Polls until `check` holds (or throws what it last threw). */
export async function waitFor(what: string, check: () => boolean | void, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (check() !== false) return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function live<D extends DomainName>(scope: LiveScope<D>): Promise<void> {
  return waitFor(`${scope.domain}/${scope.scope} to be live (is ${scope.status}, error ${scope.error?.code})`, () => scope.status === "live");
}

/**
 * The platform's WebSocket, with every socket kept so a test can cut it, and a switch
 * that sends new sockets to a closed port (the server unreachable) until turned off.
 */
export function cuttableSockets() {
  const sockets: WebSocket[] = [];
  const state = { blocked: false, swallow: false };
  class Cuttable extends WebSocket {
    constructor(url: string) {
      super(state.blocked ? "ws://127.0.0.1:1/unreachable" : url);
      sockets.push(this);
    }
    // With `swallow` on, frames from the server are lost (a reply that never arrives).
    override set onmessage(listener: ((event: MessageEvent) => void) | null) {
      super.onmessage = listener && ((event: MessageEvent) => {
        if (!state.swallow) listener(event);
      });
    }
    override get onmessage(): ((event: MessageEvent) => void) | null {
      return super.onmessage;
    }
  }
  return {
    WebSocket: Cuttable,
    sockets,
    block(blocked: boolean) {
      state.blocked = blocked;
    },
    /** Loses every frame from the server while on (the commands sent still arrive). */
    swallow(on: boolean) {
      state.swallow = on;
    },
    /** Closes the open ones from this side, as a network drop would end them. */
    cut() {
      for (const socket of sockets) if (socket.readyState === WebSocket.OPEN) socket.close(4000, "cut by the test");
    },
  };
}
