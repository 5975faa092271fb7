// Whiteboard: a stroke drawn in one context appears in the other, and each sees the
// other's cursor.

import assert from "node:assert/strict";
import { test } from "node:test";
import { openLivePair, shot, twoUserScope, useBrowser, withFailureShots } from "./helpers.mjs";

const shared = useBrowser();

/** Page coordinates of board point (x, y): the canvas's top-left is board (0, 0). */
async function at(page, x, y) {
  const box = await page.getByTestId("whiteboard-canvas").boundingBox();
  return [box.x + x, box.y + y];
}

test("a stroke drawn in one context appears in the other, with the drawer's cursor", () =>
  withFailureShots("whiteboard", async () => {
    const { scope, alice, bob, aliceToken, bobToken } = await twoUserScope("whiteboard", "wb-e2e", { name: "E2E board" });
    const { a, b, pa, pb } = await openLivePair(shared.browser, `whiteboard.html?scope=${scope}`, aliceToken, bobToken);
    await pb.locator('[data-testid="presence-list"][data-count="2"]').waitFor();

    // Alice draws a wave with the pen.
    await pa.getByTestId("tool-pen").click();
    await pa.getByTestId("color-blue").click();
    await pa.mouse.move(...(await at(pa, 120, 200)));
    await pa.mouse.down();
    for (let i = 1; i <= 20; i++) {
      await pa.mouse.move(...(await at(pa, 120 + i * 15, 200 + Math.sin(i / 2) * 40)), { steps: 2 });
    }
    await pa.mouse.up();
    const stroke = pa.locator('[data-testid="element"][data-kind="stroke"]');
    await stroke.waitFor();
    const id = await stroke.getAttribute("data-id");

    // Bob sees the same element.
    const bobsStroke = pb.locator(`[data-testid="element"][data-id="${id}"]`);
    await bobsStroke.waitFor();
    assert.equal(await bobsStroke.getAttribute("data-kind"), "stroke");

    // Alice's cursor: she moves over the board; Bob sees her cursor near that point.
    await pa.getByTestId("tool-select").click();
    await pa.mouse.move(...(await at(pa, 600, 420)), { steps: 5 });
    const cursor = pb.getByTestId(`cursor-${alice}`);
    await cursor.waitFor();
    await pb.waitForFunction((testid) => {
      const el = document.querySelector(`[data-testid="${testid}"]`);
      return (
        el &&
        Math.abs(Number(el.getAttribute("data-x")) - 600) < 2 &&
        Math.abs(Number(el.getAttribute("data-y")) - 420) < 2
      );
    }, `cursor-${alice}`);

    // And Bob's, seen by Alice.
    await pb.mouse.move(...(await at(pb, 300, 500)), { steps: 5 });
    await pa.getByTestId(`cursor-${bob}`).waitFor();

    await shot(pa, "whiteboard-alice", { fullPage: false });
    await shot(pb, "whiteboard-bob", { fullPage: false });
    await a.close();
    await b.close();
  }));
