// Shared support for the browser tests: the server's address, tokens from the dev
// login, scopes made through the admin API, a headless Chromium (Debian's), pages
// signed in as a given user, and screenshots.
//
// Environment:
//   BOARDSYNC_URL          the server (default http://127.0.0.1:8080); it serves the built apps at /app/
//   BOARDSYNC_SCREENSHOTS  where screenshots go (default web/tests/screenshots)
//   CHROMIUM               the browser binary (default /usr/bin/chromium)

import { mkdirSync } from "node:fs";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const BASE = (process.env.BOARDSYNC_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
export const APP = `${BASE}/app/`;
const here = path.dirname(fileURLToPath(import.meta.url));
export const SHOTS = process.env.BOARDSYNC_SCREENSHOTS ?? path.join(here, "screenshots");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Where the apps keep the signed-in token (web/src/lib/auth.ts). */
export const TOKEN_KEY = "boardsync.token";

/** Long enough for a warm-up or a reconnect on a busy 2-core machine; never a timing assertion. */
export const WAIT = 30_000;

export { randomUUID as newId };

/** A scope key of this run only: `<prefix>-<time>-<random>` (a-z 0-9 -). */
export function uniqueScope(prefix) {
  const stamp = Date.now().toString(36);
  const random = Math.random().toString(36).slice(2, 7);
  return `${prefix}-${stamp}-${random}`
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, "-")
    .slice(0, 64);
}

/** A user name of this run only, so tests never share a rate-limit bucket or presence. */
export function uniqueUser(name) {
  return `${name}-${Math.random().toString(36).slice(2, 7)}`;
}

/** Fetches JSON, retrying 429 and 503 (scope_warming, ...) as their Retry-After says. */
export async function request(method, urlPath, { token, body, expect = [200, 201, 202, 204] } = {}) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${BASE}${urlPath}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    if ((response.status === 429 || response.status === 503) && Date.now() < deadline) {
      const after = Number(response.headers.get("retry-after") ?? "1");
      await new Promise((resolve) => setTimeout(resolve, Math.min(Math.max(after, 0.05), 5) * 1000));
      continue;
    }
    if (!expect.includes(response.status)) {
      throw new Error(`${method} ${urlPath} answered ${response.status}: ${text.slice(0, 500)}`);
    }
    return { status: response.status, body: parsed };
  }
}

/** A token from the dev login (`auth.dev_login`, on in local and test settings). */
export async function login(user, admin = false) {
  const { body } = await request("POST", "/api/dev/login", { body: { user, admin } });
  if (!body?.token) throw new Error(`dev login gave no token: ${JSON.stringify(body)}`);
  return body.token;
}

let adminToken;
export async function admin() {
  adminToken ??= await login(uniqueUser("test-admin"), true);
  return adminToken;
}

/** Fails early, and clearly, when no server answers at BOARDSYNC_URL. */
export async function health() {
  let response;
  try {
    response = await fetch(`${BASE}/health`);
  } catch (error) {
    throw new Error(`no boardsync server at ${BASE} (set BOARDSYNC_URL): ${error.message}`);
  }
  const body = await response.json();
  const app = await fetch(APP);
  if (!app.ok) throw new Error(`${APP} answered ${app.status}: build the apps (npm run build in web/) first`);
  return body;
}

/** Creates (or replaces) a scope and sets its members, e.g. {alice: "owner", bob: "editor"}. */
export async function createScope(domain, scope, members = {}, { name = scope, config = {} } = {}) {
  const token = await admin();
  await request("PUT", `/api/admin/scopes/${domain}/${scope}`, { token, body: { name, config } });
  for (const [user, role] of Object.entries(members)) {
    await request("PUT", `/api/admin/scopes/${domain}/${scope}/members/${encodeURIComponent(user)}`, {
      token,
      body: { role },
    });
  }
}

/** One command over HTTP (retried on 429/503, so a warming scope is waited for). */
export async function command(token, domain, scope, body) {
  return (await request("POST", `/api/${domain}/${scope}`, { token, body })).body;
}

/**
 * For a test file: checks the server and launches Chromium before its tests, closes the
 * browser after them. Returns `{ browser, health }`, filled in by the time a test runs
 * (`health` is what GET /health answered).
 */
export function useBrowser() {
  const shared = { browser: undefined, health: undefined };
  before(async () => {
    shared.health = await health();
    shared.browser = await launch();
  });
  after(async () => {
    await shared.browser?.close();
  });
  return shared;
}

/**
 * A new scope of `domain` (key `<prefix>-…`) with two members of this run only, alice and
 * bob (by default owner and editor), both signed in through the dev login.
 * Returns `{ scope, alice, bob, aliceToken, bobToken }`.
 */
export async function twoUserScope(domain, prefix, { name, roles = ["owner", "editor"] } = {}) {
  const scope = uniqueScope(prefix);
  const alice = uniqueUser("alice");
  const bob = uniqueUser("bob");
  await createScope(domain, scope, { [alice]: roles[0], [bob]: roles[1] }, { name });
  return { scope, alice, bob, aliceToken: await login(alice), bobToken: await login(bob) };
}

/**
 * Opens `/app/<page>` (e.g. "chat.html?scope=x") for two signed-in users, each in a browser
 * context of their own, and waits until both pages are live. `beforeOpen({ a, b })` runs
 * once the contexts exist, before any page opens (to route a context's sockets, say).
 * Returns `{ a, b, pa, pb }`: alice's and bob's contexts and pages.
 */
export async function openLivePair(browser, page, aliceToken, bobToken, { beforeOpen } = {}) {
  const a = await signedInContext(browser, aliceToken);
  const b = await signedInContext(browser, bobToken);
  await beforeOpen?.({ a, b });
  const pa = await open(a, page);
  const pb = await open(b, page);
  await waitForStatus(pa, "live");
  await waitForStatus(pb, "live");
  return { a, b, pa, pb };
}

/** A chat message text exactly, with or without the "(edited)" marker the app appends. */
const messageText = (text) =>
  new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*(\\(edited\\))?\\s*$`);

/** The chat message showing `text` (not its tombstone or an optimistic copy of another). */
export const chatMessage = (page, text) =>
  page.getByTestId("message").filter({ has: page.getByTestId("message-text").filter({ hasText: messageText(text) }) });

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/**
 * A browser context signed in as `token` (the apps read the token from this key in
 * sessionStorage, then localStorage), with console errors collected into `errors`.
 * Other options go to `browser.newContext` (time zone, locale).
 */
export async function signedInContext(
  browser,
  token,
  { viewport = { width: 1280, height: 800 }, ...options } = {},
) {
  const context = await browser.newContext({ viewport, ...options });
  if (token) {
    await context.addInitScript(
      ([key, value]) => {
        try {
          sessionStorage.setItem(key, value);
          localStorage.setItem(key, value);
        } catch {
          /* about:blank */
        }
      },
      [TOKEN_KEY, token],
    );
  }
  context.setDefaultTimeout(WAIT);
  return context;
}

const openPages = new Set();

/**
 * Runs a test body; when it fails, every page still open gets a screenshot
 * (`FAILED-<name>-<n>.png`) before the error goes on.
 */
export async function withFailureShots(name, body) {
  try {
    return await body();
  } catch (error) {
    let n = 0;
    for (const page of openPages) {
      await shot(page, `FAILED-${name}-${++n}`, { fullPage: false }).catch(() => {});
    }
    throw error;
  }
}

/** Opens `/app/<page>` (e.g. "chat.html?scope=x") in a new page of `context`. */
export async function open(context, page) {
  const tab = await context.newPage();
  tab.on("pageerror", (error) => console.error(`[${page}] page error:`, error.message));
  openPages.add(tab);
  tab.on("close", () => openPages.delete(tab));
  await tab.goto(`${APP}${page}`);
  return tab;
}

/** The page's live status banner (web/src/lib/components/StatusBanner.svelte) says `status`. */
export async function waitForStatus(page, status) {
  await page.locator(`[data-testid="status-banner"][data-status="${status}"]`).first().waitFor({ timeout: WAIT });
}

export async function shot(page, name, { fullPage = true } = {}) {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
}

/** A screenshot of one element (a panel, a row). */
export async function shotOf(locator, name) {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await locator.screenshot({ path: file });
  return file;
}

/** Polls `check` (an async function returning truthy when done) until it holds or WAIT passes. */
export async function eventually(check, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
