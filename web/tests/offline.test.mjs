// A killed connection: the page says it is offline, keeps what is typed meanwhile, and
// recovers (live again, the queued message delivered) once the network is back.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  chatMessage as message,
  createScope,
  login,
  open,
  openLivePair,
  shot,
  signedInContext,
  twoUserScope,
  uniqueScope,
  uniqueUser,
  useBrowser,
  waitForStatus,
  withFailureShots,
} from "./helpers.mjs";

const shared = useBrowser();

test("a killed connection shows the offline state, then recovers", () =>
  withFailureShots("offline", async () => {
    const { scope, aliceToken, bobToken } = await twoUserScope("chat", "offline-e2e", { name: "Offline test" });

    // Alice's live sockets go through this route, so the test can cut them; while
    // `offline` is set, new ones are refused at once (the network emulation below fails
    // her HTTP requests as well).
    let offline = false;
    const sockets = new Set();
    const { a, b, pa, pb } = await openLivePair(shared.browser, `chat.html?scope=${scope}`, aliceToken, bobToken, {
      beforeOpen: ({ a }) =>
        a.routeWebSocket(/\/live(\?|$)/, (ws) => {
          if (offline) {
            ws.close({ code: 4000, reason: "test: offline" });
            return;
          }
          sockets.add(ws);
          ws.connectToServer();
        }),
    });

    await pa.getByTestId("chat-input").fill("Before the cut");
    await pa.getByTestId("chat-input").press("Enter");
    await message(pb, "Before the cut").waitFor();

    // Cut Alice off.
    offline = true;
    await a.setOffline(true);
    for (const ws of sockets) await ws.close({ code: 4000, reason: "test: connection killed" });
    sockets.clear();
    await waitForStatus(pa, "offline");
    await shot(pa, "offline-chat");

    // What she sends now waits, shown as pending.
    await pa.getByTestId("chat-input").fill("Sent while offline");
    await pa.getByTestId("chat-input").press("Enter");
    await message(pa, "Sent while offline").and(pa.locator('[data-pending="true"]')).waitFor();

    // Back online: live again, and the queued message is delivered.
    offline = false;
    await a.setOffline(false);
    await pa
      .getByTestId("status-retry")
      .click({ timeout: 2_000 })
      .catch(() => {
        /* it may have reconnected on its own already */
      });
    await waitForStatus(pa, "live");
    await message(pa, "Sent while offline").and(pa.locator('[data-pending="false"]')).waitFor();
    await message(pb, "Sent while offline").waitFor();

    // And the link works both ways again.
    await pb.getByTestId("chat-input").fill("Welcome back");
    await pb.getByTestId("chat-input").press("Enter");
    await message(pa, "Welcome back").waitFor();
    await shot(pa, "offline-recovered");
    await a.close();
    await b.close();
  }));

test("switching channel with messages queued offline keeps their text as that channel's draft", () =>
  withFailureShots("offline-switch", async () => {
    const scope = uniqueScope("draft-e2e");
    const other = uniqueScope("draft-other");
    const alice = uniqueUser("alice");
    await createScope("chat", scope, { [alice]: "owner" }, { name: "Draft test" });
    await createScope("chat", other, { [alice]: "owner" }, { name: "Draft other" });

    const a = await signedInContext(shared.browser, await login(alice));
    let offline = false;
    const sockets = new Set();
    await a.routeWebSocket(/\/live(\?|$)/, (ws) => {
      if (offline) {
        ws.close({ code: 4000, reason: "test: offline" });
        return;
      }
      sockets.add(ws);
      ws.connectToServer();
    });
    const pa = await open(a, `chat.html?scope=${scope}`);
    await waitForStatus(pa, "live");
    const unloadWarns = () =>
      pa.evaluate(() => {
        const event = new Event("beforeunload", { cancelable: true });
        window.dispatchEvent(event);
        return event.defaultPrevented;
      });
    assert.equal(await unloadWarns(), false, "nothing queued: no warning on leaving");

    offline = true;
    await a.setOffline(true);
    for (const ws of sockets) await ws.close({ code: 4000, reason: "test: connection killed" });
    sockets.clear();
    await waitForStatus(pa, "offline");
    await pa.getByTestId("chat-input").fill("Queued, then switched away");
    await pa.getByTestId("chat-input").press("Enter");
    await message(pa, "Queued, then switched away").and(pa.locator('[data-pending="true"]')).waitFor();
    assert.equal(await pa.getByTestId("chat-input").inputValue(), "");
    assert.equal(await unloadWarns(), true, "a queued command: leaving the page warns");

    // Another channel: the queued send fails, and a notice says where its text went.
    await pa.getByTestId("channel-switch-input").fill(other);
    await pa.getByTestId("channel-switch-input").press("Enter");
    await pa.getByTestId("info-toast").filter({ hasText: `#${scope}` }).waitFor();
    assert.equal(await pa.getByTestId("chat-input").inputValue(), "");
    await pa.getByTestId("chat-input").fill("Typed in the other channel");

    // Back: the text is in the composer again; the other channel kept what was typed there.
    await pa.getByTestId("channel-switch-input").fill(scope);
    await pa.getByTestId("channel-switch-input").press("Enter");
    assert.equal(await pa.getByTestId("chat-input").inputValue(), "Queued, then switched away");
    assert.equal(await unloadWarns(), false, "nothing queued any more");
    await pa.getByTestId("channel-switch-input").fill(other);
    await pa.getByTestId("channel-switch-input").press("Enter");
    assert.equal(await pa.getByTestId("chat-input").inputValue(), "Typed in the other channel");
    await a.close();
  }));
