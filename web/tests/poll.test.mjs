// Poll: an option added in one context is voted on in the other, and the tally follows.

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

let browser;
before(async () => {
  await health();
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("an option added by one user gets the other's vote, and both see the tally", () =>
  withFailureShots("poll", async () => {
    const scope = uniqueScope("poll-e2e");
    const alice = uniqueUser("alice");
    const bob = uniqueUser("bob");
    await createScope("poll", scope, { [alice]: "owner", [bob]: "editor" }, { name: "Lunch?" });

    const a = await signedInContext(browser, await login(alice));
    const b = await signedInContext(browser, await login(bob));
    const pa = await open(a, `poll.html?scope=${scope}`);
    const pb = await open(b, `poll.html?scope=${scope}`);
    await waitForStatus(pa, "live");
    await waitForStatus(pb, "live");

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
