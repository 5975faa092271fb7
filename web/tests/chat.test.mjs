// Chat: two people in two browser contexts see each other's messages, edits and reactions.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  createScope,
  health,
  launch,
  login,
  open,
  shot,
  signedInContext,
  uniqueScope,
  uniqueUser,
  waitForStatus,
  withFailureShots,
} from "./helpers.mjs";

/** A message text exactly, with or without the "(edited)" marker the app appends. */
const textOf = (text) => new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*(\\(edited\\))?\\s*$`);

let browser;
before(async () => {
  await health();
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The message showing `text` (not its tombstone or an optimistic copy of another). */
const message = (page, text) =>
  page.getByTestId("message").filter({ has: page.getByTestId("message-text").filter({ hasText: textOf(text) }) });

test("two users see each other's messages, edits and reactions", () =>
  withFailureShots("chat", async () => {
    const scope = uniqueScope("chat-e2e");
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    await createScope("chat", scope, { [alice]: "owner", [bob]: "editor" }, { name: "E2E chat" });

    const a = await signedInContext(browser, await login(alice));
    const b = await signedInContext(browser, await login(bob));
    const pa = await open(a, `chat.html?scope=${scope}`);
    const pb = await open(b, `chat.html?scope=${scope}`);
    await waitForStatus(pa, "live");
    await waitForStatus(pb, "live");

    // Alice writes; Bob sees it, with her as the author and acknowledged.
    await pa.getByTestId("chat-input").fill("Hello from Alice");
    await pa.getByTestId("chat-send").click();
    await message(pa, "Hello from Alice").and(pa.locator('[data-pending="false"]')).waitFor();
    const seenByBob = message(pb, "Hello from Alice");
    await seenByBob.waitFor();
    assert.equal(await seenByBob.getAttribute("data-author"), alice);

    // Bob answers with Enter; Alice sees it.
    await pb.getByTestId("chat-input").fill("Hi Alice, Bob here");
    await pb.getByTestId("chat-input").press("Enter");
    const seenByAlice = message(pa, "Hi Alice, Bob here");
    await seenByAlice.waitFor();
    assert.equal(await seenByAlice.getAttribute("data-author"), bob);

    // Alice edits her message; Bob sees the new text and the edited marker.
    const mine = message(pa, "Hello from Alice");
    await mine.hover();
    await mine.getByTestId("message-edit").click();
    await pa.getByTestId("message-edit-input").fill("Hello from Alice (edited by her)");
    await pa.getByTestId("message-edit-save").click();
    const edited = message(pb, "Hello from Alice (edited by her)");
    await edited.waitFor();
    await edited.getByTestId("message-edited").waitFor();

    // Bob reacts to it; Alice sees the reaction, Bob's not hers.
    await edited.hover();
    await edited.getByTestId("react-👍").click();
    await edited.locator('[data-testid="reaction-👍"][data-mine="true"][data-count="1"]').waitFor();
    const chipForAlice = message(pa, "Hello from Alice (edited by her)").getByTestId("reaction-👍");
    await chipForAlice.and(pa.locator('[data-count="1"][data-mine="false"]')).waitFor();

    // And Alice reacts to Bob's message; he sees it.
    const bobs = message(pa, "Hi Alice, Bob here");
    await bobs.hover();
    await bobs.getByTestId("react-🎉").click();
    await message(pb, "Hi Alice, Bob here").locator('[data-testid="reaction-🎉"][data-count="1"]').waitFor();

    await shot(pa, "chat-alice");
    await shot(pb, "chat-bob");
    await a.close();
    await b.close();
  }));
