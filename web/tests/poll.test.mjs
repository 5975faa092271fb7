// Poll: an option added in one context is voted on in the other, and the tally follows.

import { test } from "node:test";
import { openLivePair, shot, twoUserScope, useBrowser, withFailureShots } from "./helpers.mjs";

const shared = useBrowser();

test("an option added by one user gets the other's vote, and both see the tally", () =>
  withFailureShots("poll", async () => {
    const { scope, aliceToken, bobToken } = await twoUserScope("poll", "poll-e2e", { name: "Lunch?" });
    const { a, b, pa, pb } = await openLivePair(shared.browser, `poll.html?scope=${scope}`, aliceToken, bobToken);

    for (const label of ["Pizza", "Ramen", "Salad"]) {
      await pa.getByTestId("poll-new-option").fill(label);
      await pa.getByTestId("poll-add-option").click();
      await pb.getByTestId(`option-${label}`).waitFor();
    }

    await pb.getByTestId("vote-Ramen").click();
    await pa.locator('[data-testid="option-Ramen"][data-votes="1"][data-voted="false"]').waitFor();
    await pa.getByTestId("vote-Ramen").click();
    await pb.locator('[data-testid="option-Ramen"][data-votes="2"][data-voted="true"]').waitFor();
    await pa.getByTestId("vote-Pizza").click();
    await pb.locator('[data-testid="option-Pizza"][data-votes="1"]').waitFor();
    await pb.locator('[data-testid="poll-summary"][data-total="3"]').waitFor();

    await shot(pa, "poll-alice");
    await a.close();
    await b.close();
  }));
