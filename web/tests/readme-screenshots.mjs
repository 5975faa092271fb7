// README screenshots: demo content made by two people (alice and bob), then one 1280x800
// PNG of each app and of the admin console, in docs/screenshots/.
//
//   cd web && npm run build            # the server serves web/dist
//   BOARDSYNC_URL=http://127.0.0.1:8080 node tests/readme-screenshots.mjs
//
// Not a test (no *.test.mjs): `node --test tests/` leaves it alone. It needs a server
// with the dev login on (auth.dev_login) and may be re-run: each demo scope is deleted
// with its items (?purge=true) and made again first.
//
// The scopes (their keys are what the apps show): chat #general (with #random and
// #releases beside it), the Kanban board "launch", the whiteboard "design" and the poll
// "lunch". A shared dev server holds other people's scopes too (open test scopes, a
// 2,000-message re-warm): the pages see only the demo's in the scope lists (the chat's
// channels, the console's scopes and warm-up), so the pictures show what a visitor
// would see on a server of their own.
//
// Environment: BOARDSYNC_URL, CHROMIUM (see helpers.mjs); README_SHOTS (default
// docs/screenshots at the repository's root).

import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { APP, command, eventually, health, launch, login, newId, request, signedInContext } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const OUT = process.env.README_SHOTS ?? path.resolve(here, "../../docs/screenshots");
const VIEWPORT = { width: 1280, height: 800 };

/** The demo's scopes: [domain, key, display name]. */
const SCOPES = [
  ["chat", "general", "General"],
  ["chat", "random", "Random"],
  ["chat", "releases", "Releases"],
  ["kanban", "launch", "Launch"],
  ["whiteboard", "design", "Design"],
  ["poll", "lunch", "Lunch on Friday?"],
];
const DEMO = new Set(SCOPES.map(([domain, key]) => `${domain}/${key}`));

// ---- scopes and content, over HTTP ----------------------------------------------------

let adminToken;

/** Deletes the scope with its items (when it exists), then makes it again with alice and bob. */
async function resetScope(domain, key, name) {
  await request("DELETE", `/api/admin/scopes/${domain}/${key}?purge=true`, {
    token: adminToken,
    expect: [200, 202, 204, 404],
  });
  await request("PUT", `/api/admin/scopes/${domain}/${key}`, { token: adminToken, body: { name, config: {} } });
  for (const [user, role] of [
    ["alice", "owner"],
    ["bob", "editor"],
  ]) {
    await request("PUT", `/api/admin/scopes/${domain}/${key}/members/${user}`, { token: adminToken, body: { role } });
  }
}

/** Re-warms a scope (so the console shows its rows) and waits until it is warm again. */
async function rewarm(domain, key) {
  const before = await warmupOf(domain, key);
  await request("POST", `/api/admin/warmup/${domain}/${key}`, { token: adminToken });
  await eventually(async () => {
    const now = await warmupOf(domain, key);
    return now && now.state === "warm" && now.runs > (before?.runs ?? 0);
  }, `${domain}/${key} warm again`);
}

async function warmupOf(domain, key) {
  const { body } = await request("GET", "/api/admin/warmup", { token: adminToken });
  return body.scopes.find((s) => s.domain === domain && s.scope === key);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function chatContent(alice, bob) {
  const say = async (token, scope, text) => {
    const id = newId();
    await command(token, "chat", scope, { type: "send", id, text });
    await pause(40); // distinct created_at, so the order is the conversation's
    return id;
  };
  const react = (token, id, emoji) => command(token, "chat", "general", { type: "react", id, emoji });

  const tagged = await say(alice, "general", "Release candidate 0.9.0-rc.1 is tagged 🎉");
  await say(alice, "general", "Staging has been on it since last night: no dead letters, outbox lag p99 under 200 ms.");
  await say(bob, "general", "Nice! Did the purge migration make it in?");
  const yes = await say(
    alice,
    "general",
    "It did. Deleting a scope with ?purge=true now clears PostgreSQL and the cache together.",
  );
  const loadTest = await say(bob, "general", "Great. I'll run the load test against staging after standup.");
  await say(bob, "general", "Anything you want me to look at in particular?");
  const warmup = await say(alice, "general", "Warm-up time for the big channels: about 4 s for 2,000 messages last week.");
  await command(alice, "chat", "general", {
    type: "edit",
    id: warmup,
    text: "Warm-up time for the big channels: it was about 4.5 s for 2,000 messages last week.",
  });
  const onIt = await say(bob, "general", "On it, I'll post the numbers here.");
  const lunch = await say(alice, "general", "Thanks! And the lunch poll is up, vote before 11:30 🌮");

  await react(bob, tagged, "🎉");
  await react(alice, tagged, "🚀");
  await react(bob, tagged, "🚀");
  await react(bob, yes, "👍");
  await react(alice, loadTest, "❤️");
  await react(alice, onIt, "👍");
  await react(bob, lunch, "😂");

  await say(bob, "random", "Anyone else's build cache at 40 GB? 😅");
  await say(alice, "random", "cargo clean once a month, it's tradition");
  await say(alice, "releases", "0.8.2 is out: fixes the reconnect loop on expired tokens.");
}

async function kanbanContent(alice, bob) {
  const columns = {};
  let after = null;
  for (const [name, wip_limit] of [
    ["Backlog", null],
    ["In progress", 3],
    ["Review", null],
    ["Done", null],
  ]) {
    const id = newId();
    await command(alice, "kanban", "launch", { type: "create_column", id, name, wip_limit, after });
    columns[name] = id;
    after = id;
  }
  const cards = [
    ["Backlog", alice, "Pricing page copy", "", ["marketing"], ["alice"]],
    ["Backlog", bob, "Status page for the public API", "Uptime and outbox lag, from /health and /metrics.", ["infra"], []],
    ["Backlog", alice, "Invite links for teams", "", ["feature"], ["bob"]],
    [
      "In progress",
      bob,
      "Load test the outbox",
      "2,000 messages per scope; p99 lag under 1 s.",
      ["infra", "perf"],
      ["bob"],
    ],
    ["In progress", alice, "Launch blog post", "Draft in the shared doc, with screenshots.", ["marketing"], ["alice"]],
    ["In progress", alice, "Onboarding checklist", "", ["feature"], ["alice", "bob"]],
    ["Review", bob, "Docs: adding a domain", "Walkthrough from the Rust module to the web app.", ["docs"], ["bob"]],
    ["Done", alice, "Dead-letter replay in the console", "", ["feature"], ["alice"]],
    ["Done", bob, "PostgreSQL fallback adapter", "", ["infra"], ["bob"]],
  ];
  for (const [column, token, title, description, labels, assignees] of cards) {
    await command(token, "kanban", "launch", {
      type: "create_card",
      id: newId(),
      column: columns[column],
      title,
      description,
      labels,
      assignees,
    });
  }
}

async function whiteboardContent(alice, bob) {
  const add = (token, element) =>
    command(token, "whiteboard", "design", {
      type: "add",
      id: newId(),
      rotation: 0,
      points: [],
      width: 0,
      height: 0,
      ...element,
      style: JSON.stringify(element.style),
    });
  const box = (token, x, y, width, height, color, fill, kind = "rect") =>
    add(token, { kind, x, y, width, height, style: { stroke: color, fill, strokeWidth: 2 } });
  const text = (token, x, y, value, fontSize, color) => {
    const lines = value.split("\n");
    const longest = Math.max(...lines.map((l) => l.length));
    return add(token, {
      kind: "text",
      x,
      y,
      width: Math.round(longest * fontSize * 0.58 + 8),
      height: Math.round(lines.length * fontSize * 1.25 + 6),
      style: { text: value, fontSize, color },
    });
  };
  const arrow = (token, x, y, width, height) =>
    add(token, { kind: "arrow", x, y, width, height, style: { stroke: "#1e1e2e", strokeWidth: 2 } });

  const blue = ["#1971c2", "#d0ebff"];
  const green = ["#2f9e44", "#d3f9d8"];
  const violet = ["#7048e8", "#e5dbff"];
  const orange = ["#f08c00", "#fff3bf"];

  await text(alice, 90, 80, "Write path", 30, "#1e1e2e");
  await text(alice, 92, 124, "a command from the browser to PostgreSQL", 16, "#868e96");

  await box(alice, 90, 200, 180, 96, ...blue);
  await text(alice, 128, 234, "Browser", 22, blue[0]);
  await arrow(alice, 278, 248, 132, 0);
  await box(alice, 420, 200, 200, 96, ...violet);
  await text(alice, 446, 222, "boardsync\nserver", 20, violet[0]);
  await arrow(bob, 628, 248, 132, 0);
  await box(bob, 770, 200, 210, 96, ...green);
  await text(bob, 794, 222, "SpacetimeDB\ncache", 20, green[0]);

  await arrow(bob, 875, 304, 0, 104);
  await box(bob, 790, 418, 170, 84, ...orange, "ellipse");
  await text(bob, 836, 446, "outbox", 20, orange[0]);
  await arrow(bob, 782, 460, -150, 0);
  await box(bob, 420, 412, 200, 96, ...blue);
  await text(bob, 446, 444, "PostgreSQL", 22, blue[0]);
  await text(bob, 640, 512, "applied in order,\nretried, dead letters", 14, "#868e96");

  // A hand-drawn loop around the outbox (a little wobbly, its ends overlapping) and a note.
  const loop = [];
  for (let i = 0; i <= 52; i++) {
    const a = (i / 48) * Math.PI * 2 - 2.2;
    const r = 1 + 0.035 * Math.sin(a * 3 + 1) + i * 0.0012;
    loop.push(Math.round((118 + 118 * r * Math.cos(a)) * 10) / 10, Math.round((70 + 66 * r * Math.sin(a)) * 10) / 10);
  }
  await add(alice, {
    kind: "stroke",
    x: 757,
    y: 392,
    width: 240,
    height: 140,
    points: loop,
    style: { stroke: "#e03131", strokeWidth: 3 },
  });
  await text(alice, 1010, 420, "lag p99?\nbob measures", 18, "#e03131");
}

/** Who votes for what: carol, dave and erin only vote (the poll is open to everyone signed in). */
const VOTES = {
  alice: ["Tacos 🌮", "Falafel wraps 🥙"],
  bob: ["Ramen 🍜", "Tacos 🌮"],
  carol: ["Tacos 🌮"],
  dave: ["Ramen 🍜", "Pizza 🍕"],
  erin: ["Tacos 🌮", "Ramen 🍜"],
};

async function pollContent(tokens) {
  const options = {};
  for (const [who, label] of [
    ["alice", "Tacos 🌮"],
    ["bob", "Ramen 🍜"],
    ["alice", "Falafel wraps 🥙"],
    ["bob", "Pizza 🍕"],
  ]) {
    const id = newId();
    await command(tokens[who], "poll", "lunch", { type: "add_option", id, label });
    options[label] = id;
    await pause(40);
  }
  for (const [who, labels] of Object.entries(VOTES)) {
    for (const label of labels) await command(tokens[who], "poll", "lunch", { type: "vote", id: options[label] });
  }
}

// ---- pages ------------------------------------------------------------------------------

/**
 * An IANA zone where it is now about 10:30, so the chat's times read like a working
 * morning whenever the script runs (Etc/GMT-N is N hours ahead of UTC).
 */
function morningZone() {
  const now = new Date();
  const utc = now.getUTCHours() + now.getUTCMinutes() / 60;
  let ahead = Math.round(10.5 - utc);
  if (ahead > 14) ahead -= 24;
  if (ahead < -12) ahead += 24;
  return ahead === 0 ? "Etc/GMT" : `Etc/GMT${ahead > 0 ? "-" : "+"}${Math.abs(ahead)}`;
}
const ZONE = morningZone();

/** Keeps only the demo's scopes in the scope lists the pages fetch (see the top). */
async function onlyDemoScopes(context) {
  const filter = async (route, pick) => {
    const response = await route.fetch();
    let body;
    try {
      body = await response.json();
    } catch {
      return route.fulfill({ response });
    }
    return route.fulfill({ response, json: pick(body) });
  };
  // GET /api/{domain}?limit=...: the scopes the user may see.
  await context.route(/\/api\/(chat|kanban|whiteboard|poll)\?/, (route) => {
    const domain = new URL(route.request().url()).pathname.split("/")[2];
    return filter(route, (body) => ({ ...body, scopes: body.scopes.filter((s) => DEMO.has(`${domain}/${s.key}`)) }));
  });
  await context.route(/\/api\/admin\/(scopes|warmup)$/, (route) => {
    if (route.request().method() !== "GET") return route.continue();
    const warmup = route.request().url().endsWith("/warmup");
    return filter(route, (body) => ({
      ...body,
      scopes: body.scopes.filter((s) => DEMO.has(`${s.domain}/${warmup ? s.scope : s.key}`)),
    }));
  });
}

async function contextFor(browser, token) {
  const context = await signedInContext(browser, token, { viewport: VIEWPORT, timezoneId: ZONE, locale: "en-US" });
  await onlyDemoScopes(context);
  return context;
}

async function openLive(context, page) {
  const tab = await context.newPage();
  tab.on("pageerror", (error) => console.error(`[${page}] page error:`, error.message));
  await tab.goto(`${APP}${page}`);
  await tab.locator('[data-testid="status-banner"][data-status="live"]').waitFor();
  return tab;
}

/** Waits until `user` shows in the page's presence list. */
const present = (page, user) => page.getByTestId(`presence-user-${user}`).waitFor();

async function save(page, name) {
  mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, `${name}.png`);
  // Settle: fonts, the presence pop-in, transitions.
  await page.evaluate(() => document.fonts.ready);
  await pause(400);
  await page.screenshot({ path: file });
  console.log(`${file} (${Math.round(statSync(file).size / 1024)} KB)`);
}

// ---- main --------------------------------------------------------------------------------

async function main() {
  await health();
  adminToken = await login("admin", true);
  const tokens = {};
  for (const user of ["alice", "bob", "carol", "dave", "erin"]) tokens[user] = await login(user);

  console.log("making the demo scopes…");
  for (const [domain, key, name] of SCOPES) await resetScope(domain, key, name);
  await request("PUT", "/api/admin/scopes/poll/lunch", {
    token: adminToken,
    body: { name: "Lunch on Friday?", config: { access: { authenticated: "write" } } },
  });
  await chatContent(tokens.alice, tokens.bob);
  await kanbanContent(tokens.alice, tokens.bob);
  await whiteboardContent(tokens.alice, tokens.bob);
  await pollContent(tokens);
  for (const [domain, key] of SCOPES) await rewarm(domain, key);

  const browser = await launch();
  try {
    const alice = await contextFor(browser, tokens.alice);
    const bob = await contextFor(browser, tokens.bob);

    // Chat: alice's view, bob typing.
    {
      const mine = await openLive(alice, "chat.html?scope=general");
      const his = await openLive(bob, "chat.html?scope=general");
      await present(mine, "bob");
      await mine.getByTestId("message").nth(8).waitFor();
      await mine.mouse.move(640, 790);
      await his.getByTestId("chat-input").pressSequentially("Numbers are in: warm-up p99", { delay: 30 });
      await mine.locator('[data-testid="typing-indicator"][data-users="bob"]').waitFor();
      await save(mine, "chat");
      await mine.close();
      await his.close();
    }

    // Kanban: alice's view of the board, bob on it too.
    {
      const mine = await openLive(alice, "kanban.html?scope=launch");
      const his = await openLive(bob, "kanban.html?scope=launch");
      await present(mine, "bob");
      await mine.locator('[data-testid="column-In progress"][data-count="3"]').waitFor();
      await mine.mouse.move(1200, 700);
      await save(mine, "kanban");
      await mine.close();
      await his.close();
    }

    // Whiteboard: bob has the server box selected and his cursor beside it.
    {
      const mine = await openLive(alice, "whiteboard.html?scope=design");
      const his = await openLive(bob, "whiteboard.html?scope=design");
      await present(mine, "bob");
      const canvas = his.getByTestId("whiteboard-canvas");
      await eventually(async () => Number(await canvas.getAttribute("data-count")) >= 19, "the whiteboard's elements");
      // His pointer is on the canvas: select the server box, then move a little away.
      await canvas.click({ position: { x: 600, y: 280 } });
      await his.locator('[data-testid="element"][data-selected="true"]').waitFor();
      const box = await canvas.boundingBox();
      await his.mouse.move(box.x + 560, box.y + 330, { steps: 8 });
      await mine.getByTestId("cursor-bob").waitFor();
      await mine.mouse.move(5, 795);
      await save(mine, "whiteboard");
      await mine.close();
      await his.close();
    }

    // Poll: alice's view, bob there too.
    {
      const mine = await openLive(alice, "poll.html?scope=lunch");
      const his = await openLive(bob, "poll.html?scope=lunch");
      await present(mine, "bob");
      await mine.locator(`[data-testid="poll-summary"][data-total="${Object.values(VOTES).flat().length}"]`).waitFor();
      await mine.mouse.move(1200, 700);
      await save(mine, "poll");
      await mine.close();
      await his.close();
    }
    await alice.close();
    await bob.close();

    // The admin console: health, warm-up, outbox (its lag chart is kept by the page: let it draw).
    {
      const admin = await contextFor(browser, adminToken);
      const page = await admin.newPage();
      await page.goto(`${APP}console.html`);
      await page.getByTestId("health-status").waitFor();
      await page.getByTestId("warmup-row-chat-general").waitFor();
      await page.getByTestId("outbox-row-chat").waitFor();
      await pause(15_000);
      await save(page, "console");
      await admin.close();
    }
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
