// Prints the web benchmark's results (one JSON per adapter, from run.mjs) as tables.
//
//   node web/bench/report.mjs results/spacetimedb.json results/postgres.json

import { readFileSync } from "node:fs";
import os from "node:os";
import { kb, max, median, ms, p95, table } from "./lib.mjs";

const runs = process.argv.slice(2).map((file) => JSON.parse(readFileSync(file, "utf8")));
if (!runs.length) {
  console.error("usage: node report.mjs <results.json>...");
  process.exit(2);
}

const first = runs[0];
console.log(`\nboardsync web benchmark at ${first.commit ?? "?"}: ${first.profile ?? "?"} build (${first.binary}), ${os.cpus().length}-core machine shared by Chromium, Node, boardsync, SpacetimeDB and PostgreSQL\n`);

const paged = runs.filter((r) => r.pageload);
if (paged.length) {
  console.log(
    `Page load, ms from navigation start to the first frame showing live data (status "live" + the seeded content): ` +
      `first load, then ${first.loads} cold (new context) and ${first.loads} warm (cached) loads` +
      (first.loads < 20 ? ` (p95 of ${first.loads} samples is their maximum)` : ""),
  );
  const rows = [
    ["adapter", "page", "first", "cold p50", "cold p95", "warm p50", "warm p95", "DCL cold p50", "JS KB (gzip)", "CSS KB (gzip)", "cold KB: page/api (fetches)", "warm KB: page/api"],
  ];
  for (const run of paged) {
    for (const [name, r] of Object.entries(run.pageload)) {
      const cold = r.cold.map((t) => t.ready);
      const warm = r.warm.map((t) => t.ready);
      const pageBytes = (b) => b.document + b.js + b.css + b.other;
      rows.push([
        run.adapter,
        name,
        ms(r.first.ready),
        ms(median(cold)),
        ms(p95(cold)),
        ms(median(warm)),
        ms(p95(warm)),
        ms(median(r.cold.map((t) => t.dcl))),
        `${kb(r.sizes.js)} (${kb(r.sizes.jsGzip)})`,
        `${kb(r.sizes.css)} (${kb(r.sizes.cssGzip)})`,
        `${kb(pageBytes(r.coldBytes))} / ${kb(r.coldBytes.api)} (${r.coldBytes.apiRequests})`,
        `${kb(pageBytes(r.warmBytes))} / ${kb(r.warmBytes.api)}`,
      ]);
    }
  }
  console.log(table(rows));
  console.log(
    "KB: transferred on the wire (headers + bodies; the server does not compress, gzip shows what it would send); " +
      "page = HTML + JS + CSS + icon, api = snapshot and other fetches (the live socket not counted).\n",
  );
}

const restarted = runs.filter((r) => r.reconnect);
if (restarted.length) {
  console.log(
    `Reconnect after a server restart (same port and database), ${first.clientCount} live TypeScript clients on a chat channel of 200 messages, ` +
      `${first.rounds} restart(s) per row. stop = signal -> exit, start = spawn -> /health 200, down = signal -> /health 200; ` +
      `gap = a pause before the restart (a slower restart, to show the backoff's effect). Per client: dropped = signal -> its status leaves "live"; ` +
      `from /health 200: live = status "live" again, seen = live and holding a message written by another client right after.`,
  );
  const rows = [["adapter", "signal", "backoff ms", "stop", "gap", "start", "down", "dropped p50/max", "write", "live p50", "live p95", "live max", "seen p50", "seen p95", "seen max", "sockets p50/max", "warming", "write at +300ms"]];
  for (const run of restarted) {
    for (const r of run.reconnect) {
      const restarts = r.restarts;
      const clients = restarts.flatMap((x) => x.clients);
      const tries = clients.map((c) => c.tries);
      rows.push([
        run.adapter,
        r.signal,
        `${r.backoff.initialMs}/${r.backoff.maxMs}`,
        ms(median(restarts.map((x) => x.stop))),
        ms(r.gapMs ?? 0),
        ms(median(restarts.map((x) => x.start))),
        ms(median(restarts.map((x) => x.down))),
        `${ms(median(clients.map((c) => c.dropped)))}/${ms(max(clients.map((c) => c.dropped)))}`,
        ms(median(restarts.map((x) => x.write))),
        ms(median(clients.map((c) => c.live))),
        ms(p95(clients.map((c) => c.live))),
        ms(max(clients.map((c) => c.live))),
        ms(median(clients.map((c) => c.seen))),
        ms(p95(clients.map((c) => c.seen))),
        ms(max(clients.map((c) => c.seen))),
        `${median(tries)}/${max(tries)}`,
        `${clients.filter((c) => c.warming).length}/${clients.length}`,
        [...new Set(restarts.map((x) => x.writeDuringStop))].join(","),
      ]);
    }
  }
  console.log(table(rows));
  console.log(
    "backoff: the client's reconnect {initialMs}/{maxMs}, full jitter (250/10000 is the default). write: /health 200 -> the other client's " +
      "HTTP write accepted. sockets: live sockets each client opened from the stop until live. warming: clients that saw scope_warming. " +
      "write at +300ms: what one HTTP write got 300 ms after the signal (a status, refused, or gone: the process had exited).\n",
  );
}
for (const run of runs) {
  console.log(`${run.adapter}: first start ${ms(run.firstStart)} ms, seeding ${ms(run.seedMs)} ms, whole run ${((run.totalMs ?? 0) / 1000).toFixed(0)} s`);
}
