import { BoardsyncError, asBoardsyncError, fromDetail } from "./errors.js";
import type { DomainName, Domains, Durability, Page, Peer, components } from "./index.js";
import { dropsDeleted, eventItems, type Versioned } from "./items.js";
import { scopePath, type Transport } from "./transport.js";

export type ConnectionStatus =
  | "connecting" // first connect, or reconnecting after a drop (see `offline`)
  | "warming" // the server answered 503 scope_warming; retrying
  | "live" // snapshot loaded, socket open, events flowing
  | "offline" // dropped; waiting to reconnect (backoff)
  | "denied" // 401/403/404 (token, access revoked, scope missing): no retry until reconnect() is called
  | "closed"; // close() was called

export interface LiveScope<D extends DomainName> {
  readonly domain: D;
  readonly scope: string;
  readonly status: ConnectionStatus;
  /** Confirmed items merged with pending optimistic ones, keyed by item id, in the server's snapshot order
   *  for what came from snapshots and arrival order for the rest (apps sort for display). Deleted items
   *  stay with `deleted`/`removed` set where the domain keeps tombstones. */
  readonly items: ReadonlyMap<string, Domains[D]["item"]>;
  /** Ids whose shown state is optimistic (sent, not yet answered). */
  readonly pending: ReadonlySet<string>;
  /** Other connections on this scope: connection id -> { connection, user, state }. */
  readonly presence: ReadonlyMap<string, Peer>;
  /** Older snapshot pages remain (chat history). */
  readonly hasMore: boolean;
  /** Commands given to `send` without a reply yet (queued, or on the wire): `close()` would fail them. */
  readonly queued: number;
  /** Why the status is "denied" (or the last error seen; cleared when live again). */
  readonly error: BoardsyncError | null;
  /** Called after every change (items, status, presence). Returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Sends a command on the socket with a fresh `ref`; resolves with the reply's event, rejects with
   *  BoardsyncError on refusal (then the optimistic item is rolled back). While offline, commands
   *  queue and are sent after reconnect, in order. On a drop mid-flight only creates and a user's own
   *  set operations are resent; others reject with `in_doubt` (see README). */
  send(command: Domains[D]["command"], options?: SendOptions<D>): Promise<Domains[D]["event"]>;
  /** Sets this connection's presence state (a cursor, "typing"...); null clears it. Resent after reconnect. */
  setPresence(state: Record<string, unknown> | null): void;
  /** Loads the next older page into `items`. Resolves false when there is none. */
  loadOlder(limit?: number): Promise<boolean>;
  /** Reconnect now (after "denied", or to skip the backoff). */
  reconnect(): void;
  close(): void;
}

export interface SendOptions<D extends DomainName> {
  durability?: Durability;
  /** Shown in `items` (and its id in `pending`) until the reply; several for a whiteboard move. */
  optimistic?: Domains[D]["item"] | Domains[D]["item"][];
  /** Overrides the client's `commandTimeoutMs` for this command. */
  timeoutMs?: number;
}

export interface OpenOptions {
  /** Snapshot page size; when absent, the server's default (50), or for `allPages` the largest page
   *  the API allows (500; 50 if the server refuses it), so a typical board is one request. */
  pageSize?: number;
  /**
   * Load every page on open and on each resync. The default for boards, whiteboards
   * and polls, which are unusable in part; chat loads its newest page and pages back
   * with `loadOlder()`.
   */
  allPages?: boolean;
}

/** Timings the client passes to each live scope. */
export interface LiveTimings {
  initialMs: number;
  maxMs: number;
  commandTimeoutMs: number;
  readyTimeoutMs: number;
}

type Item<D extends DomainName> = Domains[D]["item"];
type Event<D extends DomainName> = Domains[D]["event"];
type Reply = components["schemas"]["ChatEventReply"] & { kind: "reply" };

/** A command on its way: kept until its reply; see `detach` for what a drop does to it. */
interface Outgoing<D extends DomainName> {
  frame: Record<string, unknown>;
  resolve: (event: Event<D>) => void;
  reject: (error: BoardsyncError) => void;
  timeoutMs: number;
  /** On the wire: sent on the current socket, no reply yet. */
  sent: boolean;
  /** The reply is due by then, counted from the first send and kept across resends (0: never sent). */
  timer?: ReturnType<typeof setTimeout>;
  deadline: number;
  /** A 503 or 429 reply's retry, within the deadline; later commands wait behind it. */
  retry?: ReturnType<typeof setTimeout>;
  /** Times it was sent again after a drop caught it on the wire. */
  resends: number;
}

/**
 * Commands that are safe to send again when a drop leaves unknown whether they were
 * applied: creates of an item with a client-made id (a repeat is answered with the same
 * item, or `id_conflict`) and one user's own set operations, which overwrite no one else.
 * Every other command may have been applied and then overwritten by someone else's
 * acknowledged write: repeating it would undo theirs, so it fails `in_doubt` instead.
 */
const RESENDABLE: { [D in DomainName]: ReadonlySet<string> } = {
  chat: new Set(["send", "react", "unreact"]),
  kanban: new Set(["create_column", "create_card"]),
  whiteboard: new Set(["add"]),
  poll: new Set(["add_option", "vote", "unvote"]),
};

/** Creates among them: a resend answered `id_conflict` may be the first send's item. */
const CREATES: { [D in DomainName]: ReadonlySet<string> } = {
  chat: new Set(["send"]),
  kanban: new Set(["create_column", "create_card"]),
  whiteboard: new Set(["add"]),
  poll: new Set(["add_option"]),
};

/** The page size `allPages` reads with when none is given: the API's largest (`api.max_page_size`). */
const BULK_PAGE_SIZE = 500;
/** What `allPages` falls back to when a server refuses the bulk size (400 invalid_limit). */
const SMALL_PAGE_SIZE = 50;

/** How often one command is sent again after drops before it fails (a command that kills the socket). */
const MAX_RESENDS = 3;

/** One snapshot reading: the pages it took, so a resync re-reads as far back as the user had paged. */
interface Listing<D extends DomainName> {
  items: Item<D>[];
  hasMore: boolean;
  nextBefore: string | null;
  limits: (number | undefined)[];
}

/** A snapshot reading in progress on one connection. */
interface Sync<D extends DomainName> {
  /** Events that arrived while it was read, applied over it once it is in. */
  buffer: Map<string, Item<D>>;
  /** A resync came meanwhile: the reading may predate what it announced, so read again. */
  again: boolean;
  done: Promise<void>;
  finish: () => void;
}

const OPEN = 1;
/** The server's close code for "no longer allowed" (access revoked, token expired). */
const POLICY_VIOLATION = 1008;
/** The close code for a frame too large to read. */
const MESSAGE_TOO_BIG = 1009;

/** The live view of one scope: see `LiveScope`. Created by `BoardsyncClient.open`. */
export class LiveScopeImpl<D extends DomainName> implements LiveScope<D> {
  private _status: ConnectionStatus = "connecting";
  private _error: BoardsyncError | null = null;
  private _hasMore = false;
  private nextBefore: string | null = null;
  private pageLimits: (number | undefined)[] = [];
  /** Bumped whenever a snapshot reading replaces the items, so a `loadOlder` page read before it is not mixed in. */
  private listingGen = 0;

  /** What the server has confirmed, by id, in snapshot then arrival order. */
  private confirmed = new Map<string, Item<D>>();
  /** Versions of deleted items dropped from `confirmed` (see `dropsDeleted`), so a late older event cannot bring one back. */
  private gone = new Map<string, number>();
  /** Optimistic items by command ref, in sending order. */
  private overlay = new Map<string, Item<D>[]>();
  /** Built on demand and kept until the next change, so `items` is the same object between changes (React's useSyncExternalStore needs that). */
  private view: Map<string, Item<D>> | null = null;
  private pendingView: Set<string> | null = null;
  private _presence: ReadonlyMap<string, Peer> = new Map();
  /** What `setPresence` last set (undefined: never), sent again on each new socket. */
  private myPresence: Record<string, unknown> | null | undefined = undefined;

  /** The user the token names (its JWT `sub`), when it can be read: tells our own items. */
  private me: string | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly outgoing = new Map<string, Outgoing<D>>();
  private refs = 0;

  /** Bumped by every connection attempt and every drop: callbacks of an older one see it and do nothing. */
  private conn = 0;
  private socket: WebSocket | null = null;
  /** `ready` came on the current socket: the server's subscription is live, so a snapshot read now misses nothing. */
  private ready = false;
  /** Failed attempts since the last time live: the backoff's exponent. */
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** An error reply without a ref on the current socket (the subscription refused, access revoked). */
  private ending: BoardsyncError | null = null;
  /**
   * The connection the server refused a frame on (too large, or unreadable): it
   * closes that socket next, so no command goes out on it meanwhile (it would be
   * failed with the frame's error); they wait for the next connection.
   */
  private refusedFrameOn = -1;
  private sync: Sync<D> | null = null;
  private older: Promise<unknown> = Promise.resolve();
  private readonly allPages: boolean;
  /** `pageSize` is BULK_PAGE_SIZE by default, not the caller's: a server refusing it gets SMALL_PAGE_SIZE. */
  private bulk: boolean;
  private pageSize: number | undefined;

  constructor(
    private readonly transport: Transport,
    readonly domain: D,
    readonly scope: string,
    private readonly timings: LiveTimings,
    options: OpenOptions = {},
  ) {
    this.allPages = options.allPages ?? domain !== "chat";
    this.pageSize = options.pageSize ?? (this.allPages ? BULK_PAGE_SIZE : undefined);
    this.bulk = options.pageSize === undefined && this.allPages;
    onlineEvents(this.onOnline, true);
    this.connect();
  }

  // ---- state -------------------------------------------------------------------

  get status(): ConnectionStatus {
    return this._status;
  }

  get error(): BoardsyncError | null {
    return this._error;
  }

  get hasMore(): boolean {
    return this._hasMore;
  }

  get queued(): number {
    return this.outgoing.size;
  }

  get presence(): ReadonlyMap<string, Peer> {
    return this._presence;
  }

  get items(): ReadonlyMap<string, Item<D>> {
    if (!this.view) {
      const view = new Map(this.confirmed);
      for (const items of this.overlay.values()) {
        for (const item of items) {
          const { id, deleted } = item as Versioned;
          if (deleted && dropsDeleted[this.domain]) view.delete(id);
          else view.set(id, item);
        }
      }
      this.view = view;
    }
    return this.view;
  }

  get pending(): ReadonlySet<string> {
    if (!this.pendingView) {
      this.pendingView = new Set([...this.overlay.values()].flat().map((item) => (item as Versioned).id));
    }
    return this.pendingView;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    this.view = null;
    this.pendingView = null;
    this.emit();
  }

  private emit(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (error) {
        // A listener's bug is reported, not allowed to break the view for the others.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  private setStatus(status: ConnectionStatus): void {
    if (this._status === status) return;
    this._status = status;
    this.emit();
  }

  /** Keeps the higher version of an item (events may repeat what a snapshot or reply already gave). */
  private merge(item: Item<D>): boolean {
    const { id, version, deleted } = item as Versioned;
    const known = (this.confirmed.get(id) as Versioned | undefined)?.version ?? this.gone.get(id);
    if (known !== undefined && version <= known) return false;
    if (deleted && dropsDeleted[this.domain]) {
      this.confirmed.delete(id);
      this.gone.set(id, version);
    } else {
      this.confirmed.set(id, item);
      this.gone.delete(id);
    }
    return true;
  }

  private applyEvent(event: Event<D>): void {
    let changed = false;
    const buffer = this.sync?.buffer;
    for (const item of eventItems(this.domain, event)) {
      const { id, version } = item as Versioned;
      const buffered = buffer?.get(id) as Versioned | undefined;
      if (buffer && (!buffered || buffered.version < version)) buffer.set(id, item);
      changed = this.merge(item) || changed;
    }
    if (changed) this.changed();
  }

  // ---- connection ----------------------------------------------------------------

  private connect(): void {
    const conn = ++this.conn;
    this.clearTimer();
    this.ready = false;
    this.ending = null;
    if (this._status !== "warming") this.setStatus("connecting");
    this.transport.socketUrl(`${scopePath(this.domain, this.scope)}/live`).then(
      (url) => {
        if (conn !== this.conn) return;
        this.me = tokenUser(url) ?? this.me;
        // Handlers are set in the tick the socket is made: Node's WebSocket may report a
        // refused connection before the next one.
        const socket = this.transport.openSocket(url);
        this.socket = socket;
        socket.onmessage = (message) => {
          if (conn === this.conn) this.onFrame(conn, message.data);
        };
        socket.onclose = (close) => this.ended(conn, close.code, null);
        // The socket failed. Browsers follow with a close event, but Node 20's
        // WebSocket never does for a refused connection or upgrade, so this ends it.
        socket.onerror = () => this.ended(conn, 1006, null);
        this.timer = setTimeout(
          () => this.ended(conn, 0, new BoardsyncError("timeout", "the live socket did not become ready in time")),
          this.timings.readyTimeoutMs,
        );
      },
    ).catch((error) => this.ended(conn, 0, asBoardsyncError(error)));
  }

  /**
   * The current connection ended (the socket closed, or we gave up on it). Decides
   * what comes next: denied, an immediate reconnect, or a wait (warming, backoff).
   */
  private ended(conn: number, code: number, error: BoardsyncError | null): void {
    if (conn !== this.conn) return;
    const wasReady = this.ready;
    const ending = this.ending ?? error;
    if (code === MESSAGE_TOO_BIG) {
      this.rejectUnanswered(new BoardsyncError("frame_rejected", "the server closed the live socket: a command was too large", 413));
    }
    this.detach();
    if (code === POLICY_VIOLATION || ending?.code === "access_revoked" || ending?.code === "token_expired") {
      const reason = ending ?? new BoardsyncError("access_revoked", "the server closed the live socket (policy)", 403);
      // With a token function, an expired token is worth one fresh try; an
      // unusable new one is refused (401) before the socket opens, which denies.
      if (reason.code === "token_expired" && this.transport.refreshesTokens && wasReady) {
        this._error = reason;
        this.connect();
        return;
      }
      this.deny(reason);
    } else if (wasReady) {
      this.backOff(ending ?? new BoardsyncError("offline", "the live socket closed"));
    } else {
      void this.diagnose(this.conn, ending);
    }
  }

  /**
   * The socket failed before `ready`. A browser hides the upgrade's HTTP status (401,
   * 404, 429...), so ask the snapshot route, which makes the same checks.
   */
  private async diagnose(conn: number, known: BoardsyncError | null): Promise<void> {
    let error = known;
    if (!error) {
      try {
        await this.transport.request("GET", `${scopePath(this.domain, this.scope)}?limit=1`);
      } catch (probe) {
        error = asBoardsyncError(probe);
      }
    }
    if (conn !== this.conn) return;
    this.backOff(error ?? new BoardsyncError("offline", "the live socket could not open"));
  }

  /** Waits before the next attempt: as the server asks (warming, 429), else with full-jitter exponential backoff. */
  private backOff(error: BoardsyncError): void {
    if (isDenial(error)) return this.deny(error);
    this._error = error;
    const ceiling = Math.min(this.timings.maxMs, this.timings.initialMs * 2 ** Math.min(this.attempt, 30));
    // Full jitter: clients dropped together do not come back together.
    const jitter = Math.random() * ceiling;
    this.attempt += 1;
    const warming = error.code === "scope_warming";
    const delay = warming ? (error.retryAfterMs ?? jitter) : Math.max(jitter, error.retryAfterMs ?? 0);
    this.timer = setTimeout(() => this.connect(), delay);
    this._status = warming ? "warming" : "offline";
    this.emit();
  }

  private deny(error: BoardsyncError): void {
    this.detach(false);
    this._error = error;
    this.failAll(error);
    this._status = "denied";
    this.changed();
  }

  /**
   * Forgets the current socket: its later callbacks are ignored. Commands not yet sent
   * (queued offline, or waiting for a 429/503 retry) wait to be sent again, in order.
   * Commands on the wire (sent, no reply) may or may not have been applied: creates and
   * one user's own set operations are sent again (at most MAX_RESENDS times); every other
   * fails `in_doubt` and its optimistic item goes, since repeating it could overwrite what
   * another user wrote meanwhile (the resync after reconnecting shows what is there).
   * With `doubt` false (denied, closed) the caller fails them all anyway.
   */
  private detach(doubt = true): void {
    this.conn += 1;
    this.clearTimer();
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    this.ending = null;
    this.sync = null;
    if (socket) {
      socket.onmessage = socket.onclose = socket.onerror = null;
      if (socket.readyState <= OPEN) socket.close(1000);
    }
    const doubtful: string[] = [];
    const tooMany: string[] = [];
    for (const [ref, command] of this.outgoing) {
      if (command.sent && doubt) {
        if (!RESENDABLE[this.domain].has(String(command.frame.type))) doubtful.push(ref);
        else if (command.resends >= MAX_RESENDS) tooMany.push(ref);
        else command.resends += 1;
      }
      command.sent = false;
      clearTimeout(command.timer);
      clearTimeout(command.retry);
      command.timer = command.retry = undefined;
    }
    for (const ref of doubtful) this.settle(ref, inDoubt());
    for (const ref of tooMany) {
      this.settle(ref, new BoardsyncError("too_many_resends", `the connection dropped ${MAX_RESENDS + 1} times while this command was on its way`));
    }
    // Who else is here is unknown until the next socket's presence_snapshot.
    if (this._presence.size) {
      this._presence = new Map();
      this.emit();
    }
  }

  private clearTimer(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onFrame(conn: number, data: unknown): void {
    if (typeof data !== "string") return;
    let frame: Domains[D]["serverFrame"];
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    switch (frame.kind) {
      case "ready":
        this.ready = true;
        this.clearTimer();
        // Only now: events from here on arrive, so the snapshot cannot miss one.
        void this.resync(conn);
        break;
      case "event":
        this.applyEvent(frame.event as Event<D>);
        break;
      case "reply":
        this.onReply(frame as Reply);
        break;
      case "resync":
        void this.resync(conn);
        break;
      case "presence_snapshot":
        this._presence = new Map(frame.present.map((peer) => [peer.connection, peer]));
        this.emit();
        break;
      case "presence": {
        const { connection, user, state } = frame;
        this._presence = new Map(this._presence).set(connection, { connection, user, state });
        this.emit();
        break;
      }
      case "presence_left": {
        if (!this._presence.has(frame.connection)) break;
        const presence = new Map(this._presence);
        presence.delete(frame.connection);
        this._presence = presence;
        this.emit();
        break;
      }
    }
  }

  /**
   * Reads the snapshot (again) and replaces the confirmed items with it, then applies
   * the events that came meanwhile. Runs after `ready` and on every `resync` frame;
   * one at a time per connection.
   */
  private async resync(conn: number): Promise<void> {
    if (this.sync) {
      this.sync.again = true;
      return;
    }
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const sync: Sync<D> = { buffer: new Map(), again: true, done, finish };
    this.sync = sync;
    try {
      while (sync.again) {
        sync.again = false;
        sync.buffer.clear();
        let listing: Listing<D>;
        try {
          listing = await this.readListing();
        } catch (thrown) {
          if (conn !== this.conn) return;
          const error = asBoardsyncError(thrown);
          if (error.code === "scope_warming") {
            // Keep the socket (its events are buffered) and ask again when told to.
            this._error = error;
            this.setStatus("warming");
            await sleep(error.retryAfterMs ?? this.timings.initialMs);
            if (conn !== this.conn) return;
            sync.again = true;
            continue;
          }
          // Anything else ends this connection; `ended` tells denial from a network error.
          this.ended(conn, 0, error);
          return;
        }
        if (conn !== this.conn) return;
        this.replace(listing, sync.buffer);
      }
      this.sync = null;
      this.goLive();
    } finally {
      if (this.sync === sync) this.sync = null;
      sync.finish();
    }
  }

  /** Reads as many pages as the view had (all of them for `allPages`), from the newest. */
  private async readListing(): Promise<Listing<D>> {
    const pages = this.allPages ? Infinity : Math.max(1, this.pageLimits.length);
    for (let attempt = 0; ; attempt++) {
      const items: Item<D>[] = [];
      const limits: (number | undefined)[] = [];
      let before: string | undefined;
      try {
        for (;;) {
          const limit = this.pageLimits[limits.length] ?? this.pageSize;
          const page = await this.fetchPage(limit, before);
          items.push(...page.items);
          limits.push(limit);
          before = page.next_before ?? undefined;
          if (!page.has_more || before === undefined || limits.length >= pages) {
            return { items, hasMore: page.has_more, nextBefore: page.next_before, limits };
          }
        }
      } catch (error) {
        const code = asBoardsyncError(error).code;
        // The page's cursor item was deleted meanwhile (boards, whiteboards): start over.
        if (code === "cursor_gone" && attempt < 3) continue;
        // A server with a smaller maximum page than ours: read with the usual size instead.
        if (code === "invalid_limit" && this.bulk) {
          this.bulk = false;
          this.pageSize = SMALL_PAGE_SIZE;
          this.pageLimits = [];
          continue;
        }
        throw error;
      }
    }
  }

  private fetchPage(limit: number | undefined, before: string | undefined): Promise<Page<D>> {
    const query = new URLSearchParams();
    if (limit !== undefined) query.set("limit", String(limit));
    if (before !== undefined) query.set("before", before);
    const q = query.toString();
    return this.transport.request("GET", scopePath(this.domain, this.scope) + (q ? `?${q}` : ""));
  }

  private replace(listing: Listing<D>, buffer: Map<string, Item<D>>): void {
    this.confirmed = new Map();
    this.gone = new Map();
    for (const item of listing.items) this.merge(item);
    for (const item of buffer.values()) this.merge(item);
    this.pageLimits = listing.limits;
    this._hasMore = listing.hasMore;
    this.nextBefore = listing.nextBefore;
    this.listingGen += 1;
    this.changed();
  }

  private goLive(): void {
    if (this._status === "live") return;
    this.attempt = 0;
    this._error = null;
    this.setStatus("live");
    if (this.myPresence) this.transmitFrame({ kind: "presence", state: this.myPresence });
    this.flush();
  }

  /**
   * Sends what waits, in the order it was sent: strictly first in, first out, so a
   * command waiting for a 429/503 retry holds back every later one until it goes.
   */
  private flush(): void {
    if (this._status !== "live" || this.refusedFrameOn === this.conn) return;
    for (const [ref, command] of this.outgoing) {
      if (command.retry !== undefined) return;
      if (!command.sent) this.transmit(ref, command);
      if (this.outgoing.get(ref) === command && !command.sent) return; // not sent (no socket, or timed out)
    }
  }

  private onOnline = (): void => {
    // The browser says the network is back: skip the rest of the backoff.
    if (this._status === "offline") this.reconnect();
  };

  // ---- commands ------------------------------------------------------------------

  send(command: Domains[D]["command"], options: SendOptions<D> = {}): Promise<Event<D>> {
    if (this._status === "closed") return Promise.reject(closedError());
    if (this._status === "denied") return Promise.reject(this._error ?? closedError());
    // A fresh ref per command; a resend after a reconnect reuses it (refs only pair replies on one socket).
    const ref = `c${++this.refs}`;
    const frame: Record<string, unknown> = { ...command, ref };
    if (options.durability) frame.durability = options.durability;
    return new Promise((resolve, reject) => {
      const outgoing: Outgoing<D> = {
        frame,
        resolve,
        reject,
        timeoutMs: options.timeoutMs ?? this.timings.commandTimeoutMs,
        sent: false,
        deadline: 0,
        resends: 0,
      };
      this.outgoing.set(ref, outgoing);
      if (options.optimistic) {
        this.overlay.set(ref, Array.isArray(options.optimistic) ? options.optimistic : [options.optimistic]);
        this.changed();
      }
      this.flush();
    });
  }

  private transmit(ref: string, command: Outgoing<D>): void {
    // The deadline runs from the first send and stays across resends.
    if (command.deadline && Date.now() >= command.deadline) return this.settle(ref, timeoutError(command));
    if (!this.transmitFrame(command.frame)) return;
    command.sent = true;
    if (!command.deadline) command.deadline = Date.now() + command.timeoutMs;
    if (command.timer === undefined) {
      command.timer = setTimeout(() => this.settle(ref, timeoutError(command)), Math.max(0, command.deadline - Date.now()));
    }
  }

  private transmitFrame(frame: unknown): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  private onReply(reply: Reply): void {
    const command = typeof reply.ref === "string" ? this.outgoing.get(reply.ref) : undefined;
    if (reply.ok) {
      // Also for a reply to a command that timed out: its state is confirmed all the same.
      if (reply.event) this.applyEvent(reply.event as Event<D>);
      if (command) this.settle(reply.ref as string, null, reply.event as Event<D>);
      return;
    }
    const error = fromDetail(reply.error, reply.status ?? 0);
    if (!command) {
      // Not about a command: about the socket (its subscription refused, access
      // revoked, a presence state too large). A close follows the serious ones.
      if (reply.ref === null || reply.ref === undefined) {
        // A frame too large to read has no ref: it is one of the commands sent since the
        // last reply. Sending them again would only drop the socket again.
        if (error.code === "frame_rejected" || error.code === "body_too_large") {
          this.refusedFrameOn = this.conn;
          this.rejectUnanswered(error);
          return;
        }
        this._error = error;
        if (!this.ready || error.code === "access_revoked" || error.code === "token_expired") this.ending = error;
        this.emit();
      }
      return;
    }
    // Busy (429) or briefly unavailable (503): every command is safe to repeat, so try
    // again when told, as long as the reply would still be in time.
    // Later commands are held until it goes (see `flush`): a user's commands apply in order.
    if ((error.status === 503 || error.status === 429) && command.sent) {
      const delay = error.retryAfterMs ?? this.timings.initialMs;
      if (Date.now() + delay < command.deadline) {
        command.sent = false; // answered: not applied, so not in doubt
        command.retry = setTimeout(() => {
          command.retry = undefined;
          this.flush();
        }, delay);
        return;
      }
    }
    // A create sent again after a drop, refused because the id is taken: if the item is
    // there and ours, it is the first send's, applied before the drop (perhaps changed since).
    if (error.code === "id_conflict" && command.resends > 0 && CREATES[this.domain].has(String(command.frame.type))) {
      const event = this.ownCreation(String(command.frame.id));
      if (event) return this.settle(reply.ref as string, null, event);
    }
    this.settle(reply.ref as string, error);
  }

  /** The item `id` as its creation event, if it is in the view and this user made it. */
  private ownCreation(id: string): Event<D> | null {
    const item = this.confirmed.get(id) as Record<string, unknown> | undefined;
    if (!item || this.me === null) return null;
    const creator = this.domain === "chat" || this.domain === "poll" ? item.author : item.created_by;
    if (creator !== this.me) return null;
    const { kind: _kind, ...rest } = item;
    const events: Record<DomainName, () => unknown> = {
      chat: () => ({ type: "sent", message: item }),
      poll: () => ({ type: "option_added", option: item }),
      whiteboard: () => ({ type: "elements_changed", elements: [item] }),
      kanban: () => (item.kind === "column" ? { type: "column_changed", column: rest } : { type: "card_changed", card: rest }),
    };
    return events[this.domain]() as Event<D>;
  }

  /**
   * The server could not read a frame (too large) and closes or may close the socket:
   * the commands sent on it since the last reply fail with its error, not to be resent.
   */
  private rejectUnanswered(error: BoardsyncError): void {
    for (const [ref, command] of [...this.outgoing]) if (command.sent) this.settle(ref, error);
    this._error = error;
    this.emit();
  }

  /** Ends a command: its optimistic items go (the reply's event, if any, is already applied). */
  private settle(ref: string, error: BoardsyncError | null, event?: Event<D>): void {
    const command = this.outgoing.get(ref);
    if (!command) return;
    this.outgoing.delete(ref);
    clearTimeout(command.timer);
    clearTimeout(command.retry);
    if (this.overlay.delete(ref)) this.changed();
    if (error) command.reject(error);
    else command.resolve(event as Event<D>);
  }

  /** Every waiting command fails with `error` (denied, closed); nothing optimistic stays. */
  private failAll(error: BoardsyncError): void {
    for (const ref of [...this.outgoing.keys()]) this.settle(ref, error);
  }

  setPresence(state: Record<string, unknown> | null): void {
    this.myPresence = state;
    if (this._status === "live") this.transmitFrame({ kind: "presence", state });
  }

  // ---- paging and lifecycle ------------------------------------------------------------

  loadOlder(limit?: number): Promise<boolean> {
    // One at a time: two calls would read the same page.
    const next = this.older.then(() => this.loadOlderNow(limit));
    this.older = next.catch(() => {});
    return next;
  }

  private async loadOlderNow(limit?: number): Promise<boolean> {
    for (;;) {
      if (this.sync) {
        await this.sync.done;
        continue;
      }
      if (!this._hasMore || this.nextBefore === null) return false;
      const gen = this.listingGen;
      const size = limit ?? this.pageSize;
      const page = await this.fetchPage(size, this.nextBefore);
      // A resync replaced the items meanwhile: page on from its cursor instead.
      if (gen !== this.listingGen || this.sync) continue;
      for (const item of page.items) this.merge(item);
      this.pageLimits.push(size);
      this._hasMore = page.has_more;
      this.nextBefore = page.next_before;
      this.changed();
      return true;
    }
  }

  reconnect(): void {
    if (this._status === "closed") return;
    this.detach();
    this.attempt = 0;
    this._status = "connecting";
    this.connect();
    this.emit();
  }

  close(): void {
    if (this._status === "closed") return;
    onlineEvents(this.onOnline, false);
    this.detach(false);
    this.failAll(closedError());
    this.setStatus("closed");
  }
}

function timeoutError(command: { timeoutMs: number }): BoardsyncError {
  return new BoardsyncError("timeout", `no reply within ${command.timeoutMs} ms`);
}

/** A command on the wire when the connection dropped, not safe to send again. */
function inDoubt(): BoardsyncError {
  return new BoardsyncError(
    "in_doubt",
    "the connection dropped before the reply: the command may or may not have been applied (the view shows the current state)",
  );
}

/** The user a JWT in the URL's `token` names (`sub`), when it is one. */
function tokenUser(url: string): string | null {
  try {
    const token = new URL(url).searchParams.get("token") ?? "";
    const part = token.split(".")[1];
    if (!part) return null;
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)))) as { sub?: unknown };
    return typeof claims.sub === "string" ? claims.sub : null;
  } catch {
    return null;
  }
}

function closedError(): BoardsyncError {
  return new BoardsyncError("closed", "the live scope was closed");
}

/** No retry helps: a token refused, no access, or no such scope. */
function isDenial(error: BoardsyncError): boolean {
  return error.status === 401 || error.status === 403 || error.status === 404;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The browser's online event, where there is one (not in Node). */
function onlineEvents(listener: () => void, add: boolean): void {
  const target = globalThis as { addEventListener?: typeof addEventListener; removeEventListener?: typeof removeEventListener };
  if (add) target.addEventListener?.("online", listener);
  else target.removeEventListener?.("online", listener);
}
