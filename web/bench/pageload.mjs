// Page load of each demo app and the console in headless Chromium: from navigation
// start (performance.timeOrigin) until the app shows live data, i.e. the first
// animation frame after the DOM holds the status banner at "live" together with the
// seeded content (see READY below). Measured inside the page by a MutationObserver
// installed before any script runs, so Playwright's polling adds nothing.
//
//   first  the very first load of that page on this server (new browser context)
//   cold   each in a new browser context: empty HTTP cache, nothing stored
//   warm   the same context loading the page again: hashed bundles from its cache
//          (the server marks /app/assets immutable; pages are no-cache)

import { chromium } from "playwright-core";
import { gzipSync } from "node:zlib";
import { SEED, login, sleep } from "./lib.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** A pause after each load's page or context is closed, so its teardown (renderer, live socket) is not timed with the next. */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? "150");
const TOKEN_KEY = "boardsync.token";

/** What "shows live data" means per page: a predicate run in the page after every DOM change. */
const READY = {
  chat: `(() => {
    const live = document.querySelector('[data-testid="status-banner"][data-status="live"]');
    return !!live && document.querySelectorAll('[data-testid="message"]').length >= ${Math.min(SEED.messages, 50)};
  })()`,
  kanban: `(() => {
    const live = document.querySelector('[data-testid="status-banner"][data-status="live"]');
    return !!live && document.querySelectorAll('[data-testid^="card-"][data-card-id]').length >= ${SEED.columns * SEED.cardsPerColumn};
  })()`,
  whiteboard: `(() => {
    const live = document.querySelector('[data-testid="status-banner"][data-status="live"]');
    return !!live && document.querySelectorAll('[data-testid="element"]').length >= ${SEED.elements};
  })()`,
  poll: `(() => {
    const live = document.querySelector('[data-testid="status-banner"][data-status="live"]');
    return !!live && document.querySelectorAll('[data-testid^="option-"][data-option-id]').length >= ${SEED.options};
  })()`,
  // The console has no live socket: admin access checked, health shown, the scope
  // list holding the seeded scopes, and the warm-up and outbox panels filled.
  console: `(() => !!document.querySelector('[data-testid="console-root"][data-access="admin"]')
    && !!document.querySelector('[data-testid="health-status"]')
    && !!document.querySelector('[data-testid="scope-row-chat-__CHAT__"]')
    && !!document.querySelector('[data-testid^="warmup-domain-"]')
    && !!document.querySelector('[data-testid^="outbox-row-"]'))()`,
};

/** Installed before the page's scripts: the token, and the ready probe. */
function initScript({ key, token, ready }) {
  try {
    sessionStorage.setItem(key, token);
    localStorage.setItem(key, token);
  } catch {
    /* about:blank */
  }
  if (location.protocol === "about:") return;
  const check = new Function(`return ${ready}`);
  let seen = false;
  const probe = () => {
    if (seen) return;
    let ok = false;
    try {
      ok = check();
    } catch {
      /* not rendered yet */
    }
    if (!ok) return;
    seen = true;
    observer.disconnect();
    window.__benchDom = performance.now();
    // The frame that paints it.
    requestAnimationFrame(() => {
      window.__benchReady = performance.now();
    });
  };
  const observer = new MutationObserver(probe);
  observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
}

/** Transferred bytes of one load, by kind, from the DevTools protocol (encodedDataLength: headers + body on the wire). */
async function networkRecorder(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const requests = new Map();
  const totals = { document: 0, js: 0, css: 0, api: 0, other: 0, requests: 0, cached: 0, apiRequests: 0 };
  const assets = new Set();
  cdp.on("Network.responseReceived", ({ requestId, type, response }) => {
    requests.set(requestId, { type, url: response.url, cached: response.fromDiskCache || response.fromPrefetchCache || response.fromServiceWorker });
  });
  cdp.on("Network.requestServedFromCache", ({ requestId }) => {
    const r = requests.get(requestId) ?? {};
    r.cached = true;
    requests.set(requestId, r);
  });
  cdp.on("Network.loadingFinished", ({ requestId, encodedDataLength }) => {
    const r = requests.get(requestId);
    if (!r) return;
    totals.requests += 1;
    if (r.cached) totals.cached += 1;
    const kind =
      r.type === "Document" ? "document" : r.type === "Script" ? "js" : r.type === "Stylesheet" ? "css" : r.type === "Fetch" || r.type === "XHR" ? "api" : "other";
    totals[kind] += encodedDataLength;
    if (kind === "api") totals.apiRequests += 1;
    if ((kind === "js" || kind === "css") && !r.cached) assets.add(r.url);
  });
  return { totals, assets, detach: () => cdp.detach().catch(() => {}) };
}

async function load(context, url) {
  const page = await context.newPage();
  const net = await networkRecorder(page);
  await page.goto(url, { waitUntil: "commit" });
  await page.waitForFunction(() => window.__benchReady !== undefined, null, { timeout: 60_000, polling: 50 });
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return { ready: window.__benchReady, dom: window.__benchDom, dcl: nav?.domContentLoadedEventEnd ?? null };
  });
  // Late responses of this load (none expected) would still be counted until here.
  await net.detach();
  return { page, timing, bytes: { ...net.totals }, assets: [...net.assets] };
}

/** Loads every page `loads` times cold and `loads` times warm; returns the samples per page. */
export async function pageLoads({ base, adminToken, user, scopes, loads, log }) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  const userToken = await login(base, user);
  const pages = [
    ["chat", `chat.html?scope=${scopes.chat}`, userToken],
    ["kanban", `kanban.html?scope=${scopes.kanban}`, userToken],
    ["whiteboard", `whiteboard.html?scope=${scopes.whiteboard}`, userToken],
    ["poll", `poll.html?scope=${scopes.poll}`, userToken],
    ["console", `console.html`, adminToken],
  ];
  const results = {};
  try {
    for (const [name, path, token] of pages) {
      const url = `${base}/app/${path}`;
      const ready = READY[name].replace("__CHAT__", scopes.chat);
      const newContext = async () => {
        const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
        await context.addInitScript(initScript, { key: TOKEN_KEY, token, ready });
        return context;
      };
      const result = { first: null, cold: [], warm: [], coldBytes: null, warmBytes: null, assets: [] };
      // Cold: a fresh context each time (the first of them is also "first").
      for (let i = 0; i < loads + 1; i++) {
        const context = await newContext();
        const { timing, bytes, assets } = await load(context, url);
        if (i === 0) {
          result.first = timing;
          result.coldBytes = bytes;
          result.assets = assets;
        } else result.cold.push(timing);
        await context.close();
        await sleep(SETTLE_MS);
      }
      // Warm: one context, primed by one load, then `loads` more.
      const context = await newContext();
      let previous = (await load(context, url)).page;
      for (let i = 0; i < loads; i++) {
        await previous.close();
        await sleep(SETTLE_MS);
        const { page, timing, bytes } = await load(context, url);
        previous = page;
        result.warm.push(timing);
        result.warmBytes ??= bytes;
      }
      await context.close();
      // Bundle sizes as served (uncompressed) and as gzip would send them.
      const sizes = { js: 0, css: 0, jsGzip: 0, cssGzip: 0 };
      for (const asset of result.assets) {
        const body = Buffer.from(await (await fetch(asset)).arrayBuffer());
        const kind = asset.endsWith(".css") ? "css" : "js";
        sizes[kind] += body.length;
        sizes[`${kind}Gzip`] += gzipSync(body, { level: 6 }).length;
      }
      result.sizes = sizes;
      results[name] = result;
      log?.(`  ${name}: first ${Math.round(result.first.ready)} ms, cold ${result.cold.map((t) => Math.round(t.ready)).join(" ")}, warm ${result.warm.map((t) => Math.round(t.ready)).join(" ")}`);
    }
  } finally {
    await browser.close();
  }
  return results;
}
