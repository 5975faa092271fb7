// Minimal raw-WebSocket client for zero-cache (Zero 1.9, sync protocol v51).
// No Zero client library: it builds the few request messages by hand and
// only does substring matching on the frames it receives.
//
// It proves, end to end:
//   (a) K subscriber sockets, each subscribed to `message where channel = X`,
//       see a new row's id appear in a frame;
//   (b) one writer socket inserts that row with a CRUD `push` (zero-cache
//       writes it to upstream Postgres itself), and sees its push acked via
//       `lastMutationIDChanges` in a poke.
// Optionally (ZERO_UPSTREAM_DB set) it also inserts a second row straight
// into Postgres and measures how fast subscribers see that one, and checks
// that the CRUD-pushed row is in Postgres.
//
// Usage:
//   node minimal-client.mjs [K]
// Env:
//   ZERO_URL          ws://127.0.0.1:4848   (zero-cache PORT)
//   K                 number of subscribers (default 3; argv[2] wins)
//   CHANNEL           channel to subscribe/write (default random)
//   CONNECT_BATCH     subscribers opened concurrently per batch (default 25)
//   ZERO_UPSTREAM_DB  optional postgres URL: verify + direct-insert test
//   VERBOSE_FRAMES    frames to print per socket (default 4)
//   WRITES            number of sequential CRUD pushes to time (default 1)
//   SAME_GROUP=1      all subscribers share ONE clientGroupID (distinct
//                     clientIDs): one view-syncer/CVR instead of K. Default:
//                     one client group per subscriber, like K browsers.
import WebSocket from 'ws';
import {randomUUID} from 'node:crypto';
import {performance} from 'node:perf_hooks';

const ZERO_URL = process.env.ZERO_URL ?? 'ws://127.0.0.1:4848';
const K = Number(process.argv[2] ?? process.env.K ?? 3);
const CHANNEL = process.env.CHANNEL ?? `ch-${randomUUID().slice(0, 8)}`;
const CONNECT_BATCH = Number(process.env.CONNECT_BATCH ?? 25);
const VERBOSE_FRAMES = Number(process.env.VERBOSE_FRAMES ?? 4);
const PROTOCOL_VERSION = 51; // zero-cache 1.9.0 accepts v30..v51

const abbrev = (s, n = 260) => (s.length > n ? s.slice(0, n) + `…(${s.length} B)` : s);
const rid = () => randomUUID().replaceAll('-', '').slice(0, 20);

// ---- protocol helpers -------------------------------------------------------

// The "message where channel = X" query AST (what zql's
// `z.query.message.where('channel', X)` serializes to; orderBy is optional,
// the server completes it with the primary key).
function channelQueryAST(channel) {
  return {
    table: 'message',
    where: {
      type: 'simple',
      left: {type: 'column', name: 'channel'},
      op: '=',
      right: {type: 'literal', value: channel},
    },
    orderBy: [['id', 'asc']],
  };
}

// Required in initConnection for a *new* client group (baseCookie empty):
// the tables/columns (zql types string|number|boolean|null|json) and primary
// key the client expects; zero-cache checks it against its replica.
const CLIENT_SCHEMA = {
  tables: {
    message: {
      columns: {
        id: {type: 'string'},
        channel: {type: 'string'},
        author: {type: 'string'},
        text: {type: 'string'},
        created_at: {type: 'number'},
      },
      primaryKey: ['id'],
    },
  },
};

// Sec-WebSocket-Protocol value: encodeURIComponent(base64(utf8(JSON.stringify(
//   {initConnectionMessage, authToken})))).
function encodeSecProtocol(initConnectionMessage, authToken) {
  const json = JSON.stringify({initConnectionMessage, authToken});
  return encodeURIComponent(Buffer.from(json, 'utf8').toString('base64'));
}

function connectURL({clientGroupID, clientID, wsid, lmid = 0}) {
  const u = new URL(`/sync/v${PROTOCOL_VERSION}/connect`, ZERO_URL);
  u.searchParams.set('clientGroupID', clientGroupID);
  u.searchParams.set('clientID', clientID);
  u.searchParams.set('wsid', wsid);
  u.searchParams.set('baseCookie', ''); // fresh client: no cookie
  u.searchParams.set('ts', String(Date.now()));
  u.searchParams.set('lmid', String(lmid)); // last mutation id this client saw
  return u.toString();
}

// Opens a socket; initConnection travels in the Sec-WebSocket-Protocol header.
function open({name, desiredQueriesPatch, onFrame, verbose, clientGroupID = `cg-${rid()}`}) {
  const clientID = `c-${rid()}`;
  const wsid = `ws-${rid()}`;
  const init = ['initConnection', {desiredQueriesPatch, clientSchema: CLIENT_SCHEMA}];
  const ws = new WebSocket(connectURL({clientGroupID, clientID, wsid}), encodeSecProtocol(init), {
    perMessageDeflate: false,
  });
  const s = {name, ws, clientGroupID, clientID, frames: 0, gotFirstPokeEnd: false};
  s.ready = new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('close', (code, reason) => {
      s.closed = true;
      reject(new Error(`${name} closed code=${code} reason=${reason}`));
    });
    ws.on('message', data => {
      const t = performance.now();
      const text = data.toString();
      s.frames++;
      if (verbose && s.frames <= VERBOSE_FRAMES) console.log(`  [${name} frame ${s.frames}] ${abbrev(text)}`);
      if (text.startsWith('["error"')) console.log(`  [${name}] ERROR FRAME: ${abbrev(text, 1000)}`);
      // Ready = the query is hydrated: a poke carried gotQueriesPatch with our
      // hash, and that poke ended. (A socket with no queries: first pokeEnd.)
      if (text.startsWith('["pokePart"') && text.includes('"gotQueriesPatch"')) s.gotPending = true;
      if (text.startsWith('["pokeEnd"') && !s.gotFirstPokeEnd && (s.gotPending || desiredQueriesPatch.length === 0)) {
        s.gotFirstPokeEnd = true;
        resolve(s);
      }
      onFrame?.(text, t, s);
    });
  });
  return s;
}

function pushInsertMessage(writer, mutationID, row) {
  return [
    'push',
    {
      clientGroupID: writer.clientGroupID,
      mutations: [
        {
          type: 'crud',
          id: mutationID, // per (clientGroupID, clientID): 1, 2, 3, ... no gaps
          clientID: writer.clientID,
          name: '_zero_crud',
          args: [{ops: [{op: 'insert', tableName: 'message', primaryKey: ['id'], value: row}]}],
          timestamp: Date.now(),
        },
      ],
      pushVersion: 1,
      timestamp: Date.now(),
      requestID: `r-${rid()}`,
    },
  ];
}

const stats = xs => {
  const a = [...xs].sort((p, q) => p - q);
  const q = f => a[Math.min(a.length - 1, Math.floor(f * a.length))];
  return `n=${a.length} min=${a[0].toFixed(1)} p50=${q(0.5).toFixed(1)} p90=${q(0.9).toFixed(1)} p99=${q(0.99).toFixed(1)} max=${a[a.length - 1].toFixed(1)} ms`;
};

// ---- run ---------------------------------------------------------------------

console.log(`zero-cache ${ZERO_URL}  K=${K}  channel=${CHANNEL}`);
const hash = `q-${CHANNEL}`; // any client-chosen string identifying the query
const desired = [{op: 'put', hash, ast: channelQueryAST(CHANNEL), ttl: 300000}];

// waiting[id] -> {t0, seenAt: Map(subscriberIndex -> ms)}
const waiting = new Map();
const subs = [];
const sharedGroup = process.env.SAME_GROUP === '1' ? `cg-${rid()}` : undefined;
const tConn0 = performance.now();
for (let i = 0; i < K; i += CONNECT_BATCH) {
  const batch = [];
  for (let j = i; j < Math.min(K, i + CONNECT_BATCH); j++) {
    const s = open({
      name: `sub${j}`,
      desiredQueriesPatch: desired,
      ...(sharedGroup ? {clientGroupID: sharedGroup} : {}),
      verbose: j === 0,
      onFrame: (text, t) => {
        for (const [id, w] of waiting) {
          if (w.t0 !== undefined && !w.seen.has(j) && text.includes(id)) {
            w.seen.set(j, t - w.t0);
            if (j === 0) console.log(`  [sub0 frame with ${id}] ${abbrev(text, 600)}`);
            if (w.seen.size === K) w.allSeen();
          }
        }
      },
    });
    subs.push(s);
    batch.push(s.ready);
  }
  await Promise.all(batch);
}
console.log(`${K} subscribers connected+hydrated in ${(performance.now() - tConn0).toFixed(0)} ms`);

let ackAt;
let ackMutationID = 0;
const writer = open({
  name: 'writer',
  desiredQueriesPatch: [], // the writer needs no query, but must initConnection to get acks
  verbose: true,
  onFrame: (text, t, s) => {
    // Ack of a CRUD push: a pokePart with lastMutationIDChanges {clientID: n}.
    const m = text.match(/"lastMutationIDChanges":\{[^}]*"([^"]+)":(\d+)/);
    if (m && m[1] === s.clientID && Number(m[2]) > ackMutationID) {
      if (ackMutationID === 0) console.log(`  [writer ack frame] ${abbrev(text, 400)}`);
      ackMutationID = Number(m[2]);
      ackAt?.(t, ackMutationID);
    }
  },
});
await writer.ready;

function expect(id) {
  const w = {seen: new Map()};
  w.done = new Promise(r => (w.allSeen = r));
  waiting.set(id, w);
  return w;
}
const timeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout: ${what}`)), ms))]);

// 1) CRUD pushes through zero-cache (WRITES of them, one at a time)
const WRITES = Number(process.env.WRITES ?? 1);
let id1;
const pushLat = [];
const ackLat = [];
for (let n = 1; n <= WRITES; n++) {
  id1 = `m-${rid()}`;
  const row1 = {id: id1, channel: CHANNEL, author: 'bench', text: 'hello via push', created_at: Date.now()};
  const w1 = expect(id1);
  const acked = new Promise(r => (ackAt = (t, m) => m >= n && r({t, n: m})));
  const msg = pushInsertMessage(writer, n, row1);
  if (n === 1) console.log(`writer -> ${abbrev(JSON.stringify(msg), 400)}`);
  w1.t0 = performance.now();
  writer.ws.send(JSON.stringify(msg));
  const ack = await timeout(acked, 15000, 'push ack');
  ackLat.push(ack.t - w1.t0);
  if (n === 1) console.log(`push acked (lastMutationIDChanges ${writer.clientID}=${ack.n}) after ${(ack.t - w1.t0).toFixed(1)} ms`);
  try {
    await timeout(w1.done, 30000, `all ${K} subscribers seeing ${id1}`);
  } catch (e) {
    console.log(String(e));
  }
  const lat = [...w1.seen.values()];
  pushLat.push(...lat);
  console.log(`write ${n}: CRUD push -> subscriber sees id: ${stats(lat)} (${w1.seen.size}/${K} saw it)`);
  waiting.delete(id1);
}
if (WRITES > 1) {
  console.log(`ALL ${WRITES} CRUD pushes: push->ack ${stats(ackLat)}`);
  console.log(`ALL ${WRITES} CRUD pushes: push->subscriber ${stats(pushLat)}`);
}

// 2) optional: verify in Postgres, then insert directly into Postgres
if (process.env.ZERO_UPSTREAM_DB) {
  const {default: postgres} = await import('postgres');
  const sql = postgres(process.env.ZERO_UPSTREAM_DB, {max: 1});
  const [r] = await sql`SELECT id, channel FROM message WHERE id = ${id1}`;
  const [c] = await sql`SELECT "lastMutationID" FROM zero_0.clients WHERE "clientGroupID" = ${writer.clientGroupID} AND "clientID" = ${writer.clientID}`;
  console.log(`postgres has pushed row: ${r ? 'yes' : 'NO'}; zero_0.clients.lastMutationID=${c?.lastMutationID}`);

  const id2 = `m-${rid()}`;
  const w2 = expect(id2);
  w2.t0 = performance.now();
  await sql`INSERT INTO message (id, channel, author, text, created_at) VALUES (${id2}, ${CHANNEL}, 'bench', 'hello via pg', ${Date.now()})`;
  const tCommit = performance.now() - w2.t0;
  try {
    await timeout(w2.done, 30000, `all ${K} subscribers seeing ${id2}`);
  } catch (e) {
    console.log(String(e));
  }
  console.log(`direct PG INSERT (commit took ${tCommit.toFixed(1)} ms) -> subscriber sees id: ${stats([...w2.seen.values()])} (${w2.seen.size}/${K} saw it)`);
  await sql.end();
}

for (const s of [...subs, writer]) s.ws.close();
setTimeout(() => process.exit(0), 200);
