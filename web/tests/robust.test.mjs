// One item no one expected (another client's odd style, duplicate labels, a peer's presence
// with an id twice) must not blank the board it is on; the card editor sends only what the
// user changed.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BASE,
  command,
  newId,
  open,
  request,
  signedInContext,
  twoUserScope,
  useBrowser,
  waitForStatus,
  withFailureShots,
  eventually,
} from "./helpers.mjs";

const shared = useBrowser();

function pageErrors(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return errors;
}

test("whiteboard: a style with non-string text, and a peer selecting an id twice, blank nothing", () =>
  withFailureShots("robust-whiteboard", async () => {
    const { scope, bob, aliceToken: ta, bobToken: tb } = await twoUserScope("whiteboard", "robust-wb", {
      roles: ["editor", "editor"],
    });
    const shape = (kind, style) => ({
      type: "add", id: newId(), kind, x: 40, y: 40, width: 80, height: 40, rotation: 0, style, points: [],
    });
    const plain = shape("rect", "{}");
    await command(ta, "whiteboard", scope, plain);
    await command(ta, "whiteboard", scope, shape("text", JSON.stringify({ text: 42, fontSize: "big" })));
    await command(ta, "whiteboard", scope, shape("text", JSON.stringify({ text: { nested: true } })));
    await command(ta, "whiteboard", scope, shape("rect", JSON.stringify({ text: ["a"], stroke: 7 })));
    await command(ta, "whiteboard", scope, shape("text", JSON.stringify({ text: "fine" })));

    const page = await open(await signedInContext(shared.browser, ta), `whiteboard.html?scope=${scope}`);
    const errors = pageErrors(page);
    await waitForStatus(page, "live");
    await eventually(async () => (await page.locator('[data-testid="element"]').count()) === 5, "all five elements drawn");
    assert.equal(await page.locator('[data-testid="element"][data-text="42"]').count(), 1);

    // Bob's socket says he selected the plain rect twice.
    const bobPage = await open(await signedInContext(shared.browser, tb), "index.html");
    const url = `${BASE.replace(/^http/, "ws")}/api/whiteboard/${scope}/live?token=${encodeURIComponent(tb)}`;
    await bobPage.evaluate(
      ([url, id]) =>
        new Promise((resolve) => {
          const ws = new WebSocket(url);
          window.__ws = ws;
          ws.onmessage = (m) => {
            if (JSON.parse(m.data).kind === "ready") {
              ws.send(JSON.stringify({ kind: "presence", state: { cursor: { x: 5, y: 5 }, selection: [id, id] } }));
              resolve();
            }
          };
        }),
      [url, plain.id],
    );
    await page.getByTestId(`cursor-${bob}`).waitFor();
    await page.locator(".remote-sel").first().waitFor();
    assert.equal(await page.locator(".remote-sel").count(), 1);
    assert.equal(await page.locator('[data-testid="element"]').count(), 5, "still every element");
    assert.deepEqual(errors, []);
  }));

test("kanban: the card editor saves labels once each, sends only changed fields, and moves a card", () =>
  withFailureShots("robust-kanban", async () => {
    const { scope, aliceToken: ta, bobToken: tb } = await twoUserScope("kanban", "robust-kb", {
      roles: ["editor", "editor"],
    });
    const todo = newId();
    const doing = newId();
    await command(ta, "kanban", scope, { type: "create_column", id: todo, name: "Todo" });
    await command(ta, "kanban", scope, { type: "create_column", id: doing, name: "Doing", after: todo });
    const ids = {};
    for (const t of ["one", "two", "three"]) {
      ids[t] = newId();
      await command(ta, "kanban", scope, { type: "create_card", id: ids[t], column: todo, title: t });
    }
    const read = async (id) => (await request("GET", `/api/kanban/${scope}`, { token: ta })).body.items.find((i) => i.id === id);

    const page = await open(await signedInContext(shared.browser, ta), `kanban.html?scope=${scope}`);
    const errors = pageErrors(page);
    await waitForStatus(page, "live");

    // Labels typed twice are saved once; every card still shows.
    await page.getByTestId("card-two").getByTestId("card-open").click();
    await page.getByTestId("card-edit-labels").fill("bug, bug, ui");
    await page.getByTestId("card-save").click();
    await eventually(async () => JSON.stringify((await read(ids.two)).labels) === '["bug","ui"]', "labels saved once each");
    assert.equal(await page.locator("[data-card-id]").count(), 3);

    // Bob retitles "one" while Alice has it open; Alice changes only its description.
    await page.getByTestId("card-one").getByTestId("card-open").click();
    await command(tb, "kanban", scope, { type: "edit_card", id: ids.one, title: "bob's title" });
    await page.getByTestId("card-bob's title").waitFor();
    await page.getByTestId("card-edit-description").fill("alice's words");
    await page.getByTestId("card-save").click();
    await eventually(async () => (await read(ids.one)).description === "alice's words", "the description saved");
    assert.equal((await read(ids.one)).title, "bob's title", "Bob's title kept");

    // Move to another column (with and without a title change) from the editor.
    await page.getByTestId("card-three").getByTestId("card-open").click();
    await page.getByTestId("card-edit-title").fill("three!");
    await page.getByTestId("card-edit-column").selectOption({ label: "Doing" });
    await page.getByTestId("card-save").click();
    await eventually(async () => {
      const c = await read(ids.three);
      return c.title === "three!" && c.column === doing;
    }, "retitled and moved");
    await page.getByTestId("card-bob's title").getByTestId("card-open").click();
    await page.getByTestId("card-edit-column").selectOption({ label: "Doing" });
    await page.getByTestId("card-save").click();
    await eventually(async () => (await read(ids.one)).column === doing, "moved");
    assert.deepEqual(errors, []);
  }));
