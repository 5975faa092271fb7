// Shared support for the web benchmarks (scripts/bench web): the boardsync process
// the benchmark starts, stops and restarts itself, HTTP helpers, seeding, statistics.
//
// The server is described by a folder (BENCH_SERVER_DIR) that scripts/bench prepares:
//   server.env   KEY=VALUE lines: the environment `boardsync serve` runs with (port,
//                database, secret file, SpacetimeDB prefix...), as start_test_server sets it
//   server.log   where its output goes (appended across restarts)
//   server.pid   the pid of the running one (scripts/bench stops it if we die)
// BOARDSYNC_BIN is the binary.

import { spawn } from "node:child_process";
import { appendFileSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import path from "node:path";

export const newId = randomUUID;
export const now = () => performance.now();
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the server ---------------------------------------------------------------------

export class Server {
  constructor(dir = process.env.BENCH_SERVER_DIR, bin = process.env.BOARDSYNC_BIN) {
    if (!dir || !bin) throw new Error("BENCH_SERVER_DIR and BOARDSYNC_BIN must be set (scripts/bench web sets them)");
    this.dir = dir;
    this.bin = bin;
    this.env = {};
    for (const line of readFileSync(path.join(dir, "server.env"), "utf8").split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) this.env[line.slice(0, at)] = line.slice(at + 1);
    }
    const port = this.env.BOARDSYNC__SERVER__PORT;
    if (!port) throw new Error("server.env has no BOARDSYNC__SERVER__PORT");
    this.url = `http://127.0.0.1:${port}`;
    this.child = null;
    this.exited = null;
    const stop = () => this.child?.kill("SIGKILL");
    process.on("exit", stop);
  }

  /** Spawns `boardsync serve`; resolves at once (see waitHealthy). */
  start() {
    if (this.child) throw new Error("the server is already running");
    const log = openSync(path.join(this.dir, "server.log"), "a");
    appendFileSync(path.join(this.dir, "server.log"), `\n=== bench: starting boardsync at ${new Date().toISOString()}\n`);
    const child = spawn(this.bin, ["serve"], { env: { ...process.env, ...this.env }, stdio: ["ignore", log, log] });
    this.child = child;
    writeFileSync(path.join(this.dir, "server.pid"), String(child.pid));
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        if (this.child === child) this.child = null;
        rmSync(path.join(this.dir, "server.pid"), { force: true });
        resolve({ code, signal, at: now() });
      });
    });
    return child;
  }

  /** Sends `signal` and resolves when the process has exited: { code, signal, at }. */
  async stop(signal = "SIGTERM") {
    if (!this.child) throw new Error("the server is not running");
    const exited = this.exited;
    this.child.kill(signal);
    return exited;
  }

  /** Polls GET /health every `everyMs` until it answers 200; resolves with the time it did. */
  async waitHealthy({ timeoutMs = 120_000, everyMs = 10 } = {}) {
    const deadline = now() + timeoutMs;
    for (;;) {
      try {
        const response = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) });
        await response.arrayBuffer();
        if (response.status === 200) return now();
      } catch {
        /* not up yet */
      }
      if (!this.child) throw new Error(`boardsync exited while starting: see ${this.dir}/server.log`);
      if (now() > deadline) throw new Error(`boardsync was not healthy within ${timeoutMs} ms`);
      await sleep(everyMs);
    }
  }
}

// ---- HTTP -----------------------------------------------------------------------------

/** JSON over HTTP, retrying 429/503 (warming, shutting down) and refused connections for up to `retryMs`. */
export async function request(base, method, urlPath, { token, body, retryMs = 60_000 } = {}) {
  const deadline = now() + retryMs;
  for (;;) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(base + urlPath, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      if (now() < deadline) {
        await sleep(20);
        continue;
      }
      throw error;
    }
    const text = await response.text();
    if ((response.status === 429 || response.status === 503) && now() < deadline) {
      const after = Number(response.headers.get("retry-after") ?? "0.05");
      await sleep(Math.min(Math.max(after, 0.02), 2) * 1000);
      continue;
    }
    if (!response.ok) throw new Error(`${method} ${urlPath} answered ${response.status}: ${text.slice(0, 300)}`);
    return text ? JSON.parse(text) : null;
  }
}

export async function login(base, user, admin = false) {
  return (await request(base, "POST", "/api/dev/login", { body: { user, admin } })).token;
}

/** Runs `jobs` (functions returning promises) with at most `limit` at once. */
export async function pool(limit, jobs) {
  const results = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

// ---- seeding ---------------------------------------------------------------------------

/** The contents the page-load benchmark opens (the issue's "realistic" sizes). */
export const SEED = { messages: 200, columns: 5, cardsPerColumn: 20, elements: 300, options: 10, voters: 20 };

/**
 * Creates one scope per app with realistic content, `user` an editor of each (and the
 * admin able to see them in the console). Returns the scope keys.
 */
export async function seed(base, adminToken, user, tag) {
  const scopes = { chat: `bench-chat-${tag}`, kanban: `bench-board-${tag}`, whiteboard: `bench-wb-${tag}`, poll: `bench-poll-${tag}` };
  for (const [domain, scope] of Object.entries(scopes)) {
    await request(base, "PUT", `/api/admin/scopes/${domain}/${scope}`, { token: adminToken, body: { name: `bench ${domain}`, config: {} } });
    await request(base, "PUT", `/api/admin/scopes/${domain}/${scope}/members/${encodeURIComponent(user)}`, {
      token: adminToken,
      body: { role: "editor" },
    });
  }
  const token = await login(base, user);
  const cmd = (domain, body) => () => request(base, "POST", `/api/${domain}/${scopes[domain]}`, { token, body });

  // Chat: 200 messages of varied length, sent in order (the newest page is what a load shows).
  const words = "the quick brown fox jumps over a lazy dog while boardsync keeps every window in sync".split(" ");
  const text = (i) => Array.from({ length: 4 + (i % 23) }, (_, k) => words[(i * 7 + k) % words.length]).join(" ");
  for (let i = 0; i < SEED.messages; i += 10) {
    await pool(10, Array.from({ length: 10 }, (_, k) => cmd("chat", { type: "send", id: newId(), text: `#${i + k} ${text(i + k)}` })));
  }

  // Kanban: 5 columns x 20 cards (cards of a column in order, columns in parallel).
  const columns = Array.from({ length: SEED.columns }, (_, c) => ({ id: newId(), name: `Column ${c + 1}` }));
  for (const [c, column] of columns.entries()) {
    await cmd("kanban", { type: "create_column", id: column.id, name: column.name, after: columns[c - 1]?.id ?? null })();
  }
  await Promise.all(
    columns.map(async (column, c) => {
      let after = null;
      for (let i = 0; i < SEED.cardsPerColumn; i++) {
        const id = newId();
        await cmd("kanban", {
          type: "create_card",
          id,
          column: column.id,
          after,
          title: `Card ${c + 1}.${i + 1} ${words[(c * 20 + i) % words.length]}`,
          description: i % 3 === 0 ? text(i) : "",
          labels: i % 4 === 0 ? ["bench"] : [],
        })();
        after = id;
      }
    }),
  );

  // Whiteboard: 300 elements, rectangles, ellipses, text and pen strokes.
  const kinds = ["rect", "ellipse", "text", "stroke"];
  await pool(
    8,
    Array.from({ length: SEED.elements }, (_, i) => {
      const kind = kinds[i % kinds.length];
      const element = {
        type: "add",
        id: newId(),
        kind,
        x: 40 + (i % 20) * 180,
        y: 40 + Math.floor(i / 20) * 160,
        width: kind === "stroke" ? 0 : 140,
        height: kind === "stroke" ? 0 : 90,
        style: JSON.stringify(kind === "text" ? { color: "#333", text: `note ${i}` } : { stroke: "#1c7ed6" }),
      };
      if (kind === "stroke") element.points = Array.from({ length: 40 }, (_, k) => (k % 2 === 0 ? k * 3 : Math.sin(k) * 20));
      return cmd("whiteboard", element);
    }),
  );

  // Poll: 10 options, and votes from 20 other users.
  const options = Array.from({ length: SEED.options }, (_, i) => ({ id: newId(), label: `Option ${i + 1}` }));
  for (const option of options) await cmd("poll", { type: "add_option", id: option.id, label: option.label })();
  const voters = await Promise.all(Array.from({ length: SEED.voters }, (_, v) => login(base, `${user}-voter${v}`)));
  for (const [v, voter] of voters.entries()) {
    await request(base, "PUT", `/api/admin/scopes/poll/${scopes.poll}/members/${encodeURIComponent(`${user}-voter${v}`)}`, {
      token: adminToken,
      body: { role: "editor" },
    });
    await request(base, "POST", `/api/poll/${scopes.poll}`, { token: voter, body: { type: "vote", id: options[v % options.length].id } });
  }
  return scopes;
}

// ---- statistics and tables --------------------------------------------------------------

/** The q-quantile (0..1) of `values`, nearest rank; null when empty. */
export function quantile(values, q) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const median = (values) => quantile(values, 0.5);
export const p95 = (values) => quantile(values, 0.95);
export const max = (values) => quantile(values, 1);

export const ms = (v) => (v === null || v === undefined ? "-" : `${Math.round(v)}`);
export const kb = (v) => (v === null || v === undefined ? "-" : (v / 1024).toFixed(1));

/** A plain-text table: rows of strings, the first the header; numbers right-aligned. */
export function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => String(row[c]).length)));
  const line = (row) =>
    row
      .map((cell, c) => {
        const s = String(cell);
        return /^[-\d.,/ ()]+$/.test(s) && c > 0 ? s.padStart(widths[c]) : s.padEnd(widths[c]);
      })
      .join("  ")
      .trimEnd();
  return [line(rows[0]), rows[0].map((_, c) => "-".repeat(widths[c])).join("  "), ...rows.slice(1).map(line)].join("\n");
}
