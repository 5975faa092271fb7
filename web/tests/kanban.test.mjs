// Kanban: a card added and dragged to another column in one context moves in the other.

import assert from "node:assert/strict";
import { test } from "node:test";
import { command, newId, openLivePair, shot, twoUserScope, useBrowser, withFailureShots } from "./helpers.mjs";

const shared = useBrowser();

test("a card dragged in one context moves in the other", () =>
  withFailureShots("kanban", async () => {
    const { scope, aliceToken, bobToken } = await twoUserScope("kanban", "kanban-e2e", { name: "E2E board" });
    // Three columns and a card to drop near, over HTTP.
    const columns = {};
    for (const name of ["To do", "Doing", "Done"]) {
      columns[name] = newId();
      await command(aliceToken, "kanban", scope, { type: "create_column", id: columns[name], name });
    }
    await command(aliceToken, "kanban", scope, {
      type: "create_card",
      id: newId(),
      column: columns.Done,
      title: "Already done",
    });

    const { a, b, pa, pb } = await openLivePair(shared.browser, `kanban.html?scope=${scope}`, aliceToken, bobToken);
    await pb.getByTestId("card-Already done").waitFor();

    // Alice adds a card through the page; Bob sees it in "To do".
    const todo = pa.getByTestId("column-To do");
    await todo.getByTestId("add-card-input").fill("Write browser tests");
    await todo.getByTestId("add-card-input").press("Enter");
    const bobsCard = pb.getByTestId("card-Write browser tests");
    await bobsCard.and(pb.locator('[data-column="To do"]')).waitFor();

    // Alice drags it below "Already done"; Bob sees it land there, second in "Done".
    const card = pa.getByTestId("card-Write browser tests");
    await card.and(pa.locator('[data-column="To do"]')).waitFor();
    await card.dragTo(pa.getByTestId("column-Done").getByTestId("column-cards"));
    await card.and(pa.locator('[data-column="Done"]')).waitFor();
    await bobsCard.and(pb.locator('[data-column="Done"][data-index="1"]')).waitFor();
    await pb.locator('[data-testid="column-Done"][data-count="2"]').waitFor();
    await pb.locator('[data-testid="column-To do"][data-count="0"]').waitFor();
    assert.equal(await pb.getByTestId("card-Already done").getAttribute("data-index"), "0");

    // And Bob drags it back to "Doing"; Alice sees that.
    await bobsCard.dragTo(pb.getByTestId("column-Doing").getByTestId("column-cards"));
    await card.and(pa.locator('[data-column="Doing"]')).waitFor();

    await shot(pa, "kanban-alice");
    await shot(pb, "kanban-bob");
    await a.close();
    await b.close();
  }));
