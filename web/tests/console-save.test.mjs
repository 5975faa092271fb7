// The console's Save changes only what the admin edited (PATCH), never re-creates a scope
// deleted elsewhere; Create never replaces a scope made meanwhile.

import assert from "node:assert/strict";
import { test } from "node:test";
import { admin, open, request, signedInContext, uniqueScope, useBrowser, withFailureShots } from "./helpers.mjs";

const shared = useBrowser();

test("console: Save sends only the edit, refuses a scope deleted elsewhere; Create does not replace", () =>
  withFailureShots("console-save", async () => {
    const token = await admin();
    const key = uniqueScope("cons-save");
    const path = `/api/admin/scopes/chat/${key}`;
    await request("PUT", path, { token, body: { name: "Open", config: { access: { authenticated: "write" } } } });
    const page = await open(await signedInContext(shared.browser, token, { viewport: { width: 1280, height: 900 } }), "console.html");
    await page.getByTestId("scope-filter").fill(key);
    await page.getByTestId(`scope-row-chat-${key}`).click();
    await page.locator(`[data-testid="scope-detail"][data-scope="${key}"]`).waitFor();

    // Another admin closes the scope; this one only renames it: the config stays closed.
    await request("PUT", path, { token, body: { name: "Open", config: {} } });
    await page.getByTestId("scope-edit-name").fill("Renamed");
    await page.getByTestId("scope-save").click();
    await page.getByTestId("scope-edit-message").filter({ hasText: "Saved" }).waitFor();
    const stored = (await request("GET", path, { token })).body;
    assert.equal(stored.name, "Renamed");
    assert.deepEqual(stored.config, {}, "the other admin's config change stays");

    // Deleted elsewhere, then Save: refused, not re-created.
    await request("DELETE", path, { token });
    await page.getByTestId("scope-edit-name").fill("Renamed again");
    await page.getByTestId("scope-save").click();
    await page.getByTestId("scope-edit-message").filter({ hasText: "deleted elsewhere" }).waitFor();
    assert.equal((await request("GET", path, { token, expect: [200, 404] })).status, 404);

    // Created by someone else after the list was read: Create says so and keeps theirs.
    const other = uniqueScope("cons-new");
    await page.getByTestId("scope-create-key").fill(other);
    await request("PUT", `/api/admin/scopes/chat/${other}`, { token, body: { name: "Theirs", config: {} } });
    await page.getByTestId("scope-create-domain").selectOption("chat");
    await page.getByTestId("scope-create-name").fill("Mine");
    await page.getByTestId("scope-create-submit").click();
    await page.getByTestId("scope-create-message").filter({ hasText: "exists already" }).waitFor();
    assert.equal((await request("GET", `/api/admin/scopes/chat/${other}`, { token })).body.name, "Theirs");
    await request("DELETE", `/api/admin/scopes/chat/${other}?purge=true`, { token });
  }));
