// One adapter's web benchmark: starts the boardsync that scripts/bench prepared
// (BENCH_SERVER_DIR, BOARDSYNC_BIN), seeds realistic scopes, measures page loads in
// Chromium, then restarts the server under live TypeScript clients. Writes the
// results as JSON to the file given; report.mjs prints them.
//
//   node --experimental-websocket web/bench/run.mjs <adapter> <results.json>
//
// Environment (defaults in brackets):
//   BENCH_LOADS [8]            cold loads and warm loads per page (plus one first load)
//   BENCH_SETTLE_MS [150]      pause after each load's page/context closes
//   BENCH_CLIENTS [20]         live clients during a restart
//   BENCH_ROUNDS [1]           restarts per (signal, backoff)
//   BENCH_RESTARTS [SIGTERM@250/10000,SIGKILL@250/10000,SIGKILL@250/1000,SIGKILL+3000@250/10000,SIGKILL+3000@250/1000]
//                              restarts to make: SIGNAL[+PAUSE_MS]@INITIAL_MS/MAX_MS, the
//                              signal that stops the server, a pause before it starts again
//                              (a slower restart), the clients' reconnect backoff (the
//                              client's default is 250/10000, full jitter)
//   BENCH_PARTS [pageload,reconnect]

import { writeFileSync } from "node:fs";
import { Server, login, now, seed } from "./lib.mjs";
import { pageLoads } from "./pageload.mjs";
import { parsePlan, reconnects } from "./reconnect.mjs";

const [adapter, out] = process.argv.slice(2);
if (!adapter || !out) {
  console.error("usage: node --experimental-websocket run.mjs <adapter> <results.json>");
  process.exit(2);
}
if (typeof WebSocket === "undefined") {
  console.error("no global WebSocket: run Node 22+, or Node 20 with --experimental-websocket");
  process.exit(2);
}

const env = (name, fallback) => process.env[name] || fallback;
const loads = Number(env("BENCH_LOADS", "8"));
const clientCount = Number(env("BENCH_CLIENTS", "20"));
const rounds = Number(env("BENCH_ROUNDS", "1"));
const plans = env("BENCH_RESTARTS", "SIGTERM@250/10000,SIGKILL@250/10000,SIGKILL@250/1000,SIGKILL+3000@250/10000,SIGKILL+3000@250/1000")
  .split(",")
  .map(parsePlan);
const parts = env("BENCH_PARTS", "pageload,reconnect").split(",");

const started = now();
const log = (line) => console.error(`[bench web ${adapter} +${((now() - started) / 1000).toFixed(0)}s] ${line}`);

const server = new Server();
const base = server.url;
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

const results = { adapter, binary: process.env.BOARDSYNC_BIN_SOURCE ?? process.env.BOARDSYNC_BIN, profile: process.env.BOARDSYNC_PROFILE ?? null, commit: process.env.BENCH_COMMIT ?? null, loads, clientCount, rounds };
try {
  server.start();
  results.firstStart = (await server.waitHealthy()) - started;
  log(`boardsync healthy at ${base} after ${Math.round(results.firstStart)} ms`);
  const health = await (await fetch(`${base}/health`)).json();
  results.health = { adapter: health.adapter, chat: health.domains?.chat?.adapter };

  const tag = Date.now().toString(36);
  const adminToken = await login(base, `bench-admin-${tag}`, true);
  const user = `bench-user-${tag}`;
  let t = now();
  const scopes = await seed(base, adminToken, user, tag);
  results.seedMs = now() - t;
  log(`seeded ${Object.values(scopes).join(", ")} in ${Math.round(results.seedMs)} ms`);

  if (parts.includes("pageload")) {
    log(`page loads: 1 first + ${loads} cold + ${loads} warm per page`);
    results.pageload = await pageLoads({ base, adminToken, user, scopes, loads, log });
  }

  if (parts.includes("reconnect")) {
    // The live clients are editors of the seeded chat channel (200 messages), each its own user.
    const users = Array.from({ length: clientCount }, (_, i) => `${user}-live${i}`);
    const tokens = [];
    for (const member of users) {
      await fetch(`${base}/api/admin/scopes/chat/${scopes.chat}/members/${encodeURIComponent(member)}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ role: "editor" }),
      }).then((r) => r.ok || Promise.reject(new Error(`adding ${member}: ${r.status}`)));
      tokens.push(await login(base, member));
    }
    const writerToken = await login(base, user);
    log(`reconnect: ${clientCount} live clients, ${plans.length} kinds of restart, ${rounds} each`);
    results.reconnect = await reconnects({ server, base, scope: scopes.chat, tokens, writerToken, plans, rounds, log });
  }
} finally {
  if (server.child) {
    const exit = await server.stop("SIGTERM");
    log(`boardsync stopped (exit ${exit.code ?? exit.signal})`);
  }
  results.totalMs = now() - started;
  writeFileSync(out, JSON.stringify(results, null, 2));
}
