// Reconnect after a server restart: `clients` live TypeScript clients (Node, one
// BoardsyncClient each, as different users) on one chat scope; the server is stopped
// (SIGTERM: graceful; SIGKILL) and started again on the same port and database.
//
// Per restart:
//   stop     signal sent -> process exited
//   gap      then a pause before the new process starts (0 unless asked: "SIGKILL+3000@...")
//   start    new process spawned -> GET /health answers 200
//   down     signal sent -> /health answers 200 again (what a user waits at best)
// Per client:
//   dropped  signal sent -> its status left "live" (the socket closed)
// and from /health answering 200 again (t_health):
//   live     its status is "live" again
//   seen     it is live and holds a message another client wrote over HTTP right
//            after t_health (the write itself retried on 503/refused until accepted)
//   tries    sockets it opened from the drop until live
// Negative values: a client was live before /health said 200 (the server serves
// requests before every dependency check passes).

import { pathToFileURL } from "node:url";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { newId, now, request, sleep } from "./lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT = pathToFileURL(path.join(here, "../../clients/typescript/dist/index.js")).href;

/** Waits until `check()` holds, polling every 5 ms. */
async function until(what, check, timeoutMs) {
  const deadline = now() + timeoutMs;
  while (!check()) {
    if (now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * One group of live clients with the given backoff. Resolves once all are live.
 * Each records its status changes and the sockets it opens.
 */
async function openClients({ base, scope, tokens, backoff }) {
  const { BoardsyncClient } = await import(CLIENT);
  const clients = tokens.map((token, i) => {
    const record = { i, sockets: 0, statuses: [], live: null, frames: [] };
    // Counts the sockets, and notes the frames that matter here (resync; an event naming the marker).
    class CountingSocket extends WebSocket {
      constructor(url) {
        super(url);
        record.sockets += 1;
        this.addEventListener("message", (message) => {
          if (typeof message.data !== "string") return;
          if (message.data.includes('"kind":"resync"')) record.frames.push({ kind: "resync", at: now() });
          else if (record.marker && message.data.includes(record.marker)) record.frames.push({ kind: "marker", at: now() });
        });
      }
    }
    const client = new BoardsyncClient({ baseUrl: base, token, WebSocket: CountingSocket, reconnect: backoff });
    const live = client.open("chat", scope);
    record.live = live;
    live.subscribe(() => {
      const last = record.statuses.at(-1);
      if (last?.status !== live.status) record.statuses.push({ status: live.status, at: now() });
    });
    return record;
  });
  await until("every client to be live", () => clients.every((c) => c.live.status === "live"), 60_000);
  return clients;
}

/**
 * Restarts the server once with `signal` while `clients` are live; returns the
 * server's times and each client's.
 */
async function restartOnce({ server, base, scope, writerToken, clients, signal, gapMs }) {
  const id = newId();
  for (const c of clients) {
    c.sockets = 0;
    c.frames = [];
    c.marker = id;
    c.statuses = [{ status: c.live.status, at: now() }];
  }
  const sent = now();
  const stopping = server.child;
  const exited = server.stop(signal);
  // What a write meets while a graceful stop is under way (once, 300 ms in, no retry):
  // an HTTP status, "refused" (nothing listens), or "gone" when the process had already exited.
  const during = sleep(300).then(async () => {
    if (stopping.exitCode !== null || stopping.signalCode !== null) return "gone";
    try {
      const response = await fetch(`${base}/api/chat/${scope}`, {
        method: "POST",
        headers: { authorization: `Bearer ${writerToken}`, "content-type": "application/json" },
        body: JSON.stringify({ type: "send", id: newId(), text: "during the stop" }),
        signal: AbortSignal.timeout(5000),
      });
      await response.arrayBuffer();
      return response.status;
    } catch (error) {
      return error?.cause?.code === "ECONNREFUSED" ? "refused" : String(error?.cause?.code ?? error?.name ?? error);
    }
  });
  const exit = await exited;
  // A slower restart (a supervisor's delay, a deploy): the port stays closed meanwhile.
  if (gapMs) await sleep(gapMs);
  const spawned = now();
  server.start();
  const healthy = await server.waitHealthy();
  const seen = new Map();
  const mark = () => {
    for (const c of clients) if (!seen.has(c.i) && c.live.status === "live" && c.live.items.has(id)) seen.set(c.i, now());
  };
  const stops = clients.map((c) => c.live.subscribe(mark));
  // Another client writes right away (retrying 503 warming/shutting down and refused connections).
  await request(base, "POST", `/api/chat/${scope}`, { token: writerToken, body: { type: "send", id, text: `after the restart ${id}` } });
  const written = now();
  mark();
  try {
    await until("every client to see the write", () => seen.size === clients.length, 90_000);
  } finally {
    for (const stop of stops) stop();
  }
  const writeDuringStop = await during;
  const perClient = clients.map((c) => {
    const dropped = c.statuses.find((s) => s.status !== "live" && s.at >= sent);
    const liveAgain = dropped ? c.statuses.find((s) => s.status === "live" && s.at > dropped.at) : undefined;
    return {
      dropped: dropped ? dropped.at - sent : null,
      live: liveAgain ? liveAgain.at - healthy : null,
      seen: seen.get(c.i) - healthy,
      tries: c.sockets,
      // How the write reached it: a live event frame (ms after /health 200), and resync frames since the stop.
      eventFrame: c.frames.find((f) => f.kind === "marker")?.at - healthy,
      resyncs: c.frames.filter((f) => f.kind === "resync").length,
      warming: c.statuses.some((s) => s.status === "warming"),
    };
  });
  return {
    signal,
    gapMs,
    writeDuringStop,
    stop: exit.at - sent,
    exit: { code: exit.code, signal: exit.signal },
    start: healthy - spawned,
    down: healthy - sent,
    write: written - healthy,
    clients: perClient,
  };
}

/**
 * Each plan ("SIGKILL+3000@250/1000": the signal, an optional pause before the
 * restart, the clients' backoff initialMs/maxMs) `rounds` times, with fresh live
 * clients each time. Returns one run per plan.
 */
export function parsePlan(text) {
  const match = /^(SIG[A-Z]+)(?:\+(\d+))?@(\d+)\/(\d+)$/.exec(text.trim());
  if (!match) throw new Error(`a restart plan is SIGNAL[+PAUSE_MS]@INITIAL_MS/MAX_MS, not ${text}`);
  return { signal: match[1], gapMs: Number(match[2] ?? 0), backoff: { initialMs: Number(match[3]), maxMs: Number(match[4]) } };
}

export async function reconnects({ server, base, scope, tokens, writerToken, plans, rounds, log }) {
  const runs = [];
  for (const { signal, gapMs, backoff } of plans) {
    const run = { backoff, signal, gapMs, restarts: [] };
    for (let r = 0; r < rounds; r++) {
      const clients = await openClients({ base, scope, tokens, backoff });
      try {
        const restart = await restartOnce({ server, base, scope, writerToken, clients, signal, gapMs });
        run.restarts.push(restart);
        const seen = restart.clients.map((c) => c.seen).sort((a, b) => a - b);
        log?.(
          `  ${signal}${gapMs ? `+${gapMs}` : ""} backoff ${backoff.initialMs}/${backoff.maxMs}: stop ${Math.round(restart.stop)} ms, ` +
            `start ${Math.round(restart.start)} ms, clients seen after health ${Math.round(seen[0])}..${Math.round(seen.at(-1))} ms ` +
            `(exit ${restart.exit.code ?? restart.exit.signal}; a write 300 ms after the signal: ${restart.writeDuringStop})`,
        );
      } finally {
        for (const c of clients) c.live.close();
      }
    }
    runs.push(run);
  }
  return runs;
}
