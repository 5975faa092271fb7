// Chat: two people in two browser contexts see each other's messages, edits and reactions.

import assert from "node:assert/strict";
import { test } from "node:test";
import { chatMessage as message, openLivePair, shot, twoUserScope, useBrowser, withFailureShots } from "./helpers.mjs";

const shared = useBrowser();

test("two users see each other's messages, edits and reactions", () =>
  withFailureShots("chat", async () => {
    const { scope, alice, bob, aliceToken, bobToken } = await twoUserScope("chat", "chat-e2e", { name: "E2E chat" });
    const { a, b, pa, pb } = await openLivePair(shared.browser, `chat.html?scope=${scope}`, aliceToken, bobToken);

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
