import { expect, test } from "@playwright/test";
import { createFactory, failOnPageErrors, screenshot, signIn, unique, waitForHydration } from "./helpers";

test.beforeEach(async ({ page }) => {
  await signIn(page, undefined, undefined, "/gateways");
});

test("creates, edits (blank password kept, moved to another factory) and deletes a gateway", async ({ page }) => {
  failOnPageErrors(page);
  const first = unique("North Plant");
  const second = unique("South Plant");
  const firstId = await createFactory(page, first);
  const secondId = await createFactory(page, second);
  const gatewayId = unique("GW").replace(/ /g, "-");
  const name = unique("Press line gateway");

  await page.goto(`/gateways?factory=${firstId}`);
  await waitForHydration(page);
  const add = page.getByRole("form", { name: "Add gateway" });
  // The filter's factory is preselected in the form.
  await expect(add.getByLabel("Factory")).toHaveValue(firstId);
  await add.getByLabel("Gateway ID").fill(gatewayId);
  await add.getByLabel("Gateway name").fill(name);
  await add.getByLabel("Gateway URL").fill("http://not-a-websocket");
  await add.getByLabel("Email").fill("admin@gateway.local");
  await add.getByLabel("Password").fill("gateway-secret");
  await add.getByRole("button", { name: "Add gateway" }).click();
  await expect(add.getByText("Gateway URL must start with ws:// or wss://")).toBeVisible();
  await expect(add.getByLabel("Gateway name")).toHaveValue(name);
  await add.getByLabel("Gateway URL").fill("ws://127.0.0.1:9");
  await add.getByRole("button", { name: "Add gateway" }).click();
  await expect(page.getByRole("status")).toContainText(`Gateway “${name}” created.`);
  const row = page.getByRole("row", { name: new RegExp(gatewayId) });
  await expect(row).toContainText(first);
  await expect(row).toContainText("—");

  // Edit: the password field is blank and says so; saving sends no password.
  await row.getByRole("link", { name: "Edit" }).click();
  const edit = page.getByRole("form", { name: "Edit gateway" });
  const password = edit.getByLabel("Password");
  await expect(password).toHaveValue("");
  await expect(password).toHaveAttribute("placeholder", "Leave blank to keep current password");
  await edit.getByLabel("Factory").selectOption(secondId);
  await edit.getByLabel("Firmware version").fill("2.1.0");
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.url().endsWith("/rpc/update_gateway")),
    edit.getByRole("button", { name: "Save changes" }).click(),
  ]);
  const sent = new URLSearchParams(request.postData() ?? "");
  expect(sent.has("password"), "a blank password must not be sent").toBe(false);
  expect(sent.get("factory_id")).toBe(secondId);
  await expect(page.getByRole("status")).toContainText(`Gateway “${name}” saved.`);

  // It moved: not under the first factory any more, under the second, after a reload too.
  await page.goto(`/gateways?factory=${firstId}`);
  await expect(page.getByRole("row", { name: new RegExp(gatewayId) })).toHaveCount(0);
  await page.goto(`/gateways?factory=${secondId}`);
  await page.reload();
  await expect(page.getByLabel("Factory", { exact: true }).first()).toBeVisible();
  const moved = page.getByRole("row", { name: new RegExp(gatewayId) });
  await expect(moved).toContainText(second);
  await expect(moved).toContainText("2.1.0");
  await screenshot(page, "gateways-edited");

  // Delete with a confirmation.
  await waitForHydration(page);
  await moved.getByText("Delete", { exact: true }).click();
  await expect(moved).toContainText(`Delete gateway “${name}” (${gatewayId})?`);
  await moved.getByRole("button", { name: "Delete gateway" }).click();
  await expect(page.getByRole("status")).toContainText(`Gateway “${name}” deleted.`);
  await expect(page.getByRole("row", { name: new RegExp(gatewayId) })).toHaveCount(0);
});

test("the factory filter and the page are kept in the URL across reloads", async ({ page }) => {
  failOnPageErrors(page);
  const factory = unique("Filter Plant");
  const factoryId = await createFactory(page, factory);
  for (let i = 0; i < 22; i++) {
    const response = await page.request.post("/rpc/create_gateway", {
      form: {
        factory_id: factoryId,
        gateway_id: unique(`GW-F${i}`).replace(/ /g, "-"),
        name: `Filter gateway ${String(i).padStart(2, "0")}`,
        url: "ws://127.0.0.1:9",
        email: "admin@gateway.local",
        password: "gateway-pass",
        model: "",
        firmware_version: "",
      },
      headers: { Accept: "application/json" },
    });
    expect(response.status()).toBe(200);
  }
  await page.goto("/gateways");
  await waitForHydration(page);
  await page.locator("#gateway-factory-filter").selectOption(factoryId);
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(new RegExp(`factory=${factoryId}`));
  await expect(page.getByRole("heading", { name: "22 gateways" })).toBeVisible();
  await page.getByRole("link", { name: "Next →" }).click();
  await expect(page).toHaveURL(new RegExp(`factory=${factoryId}&page=2`));
  await page.reload();
  await expect(page.locator("#gateway-factory-filter")).toHaveValue(factoryId);
  await expect(page.getByText("Page 2 of 2")).toBeVisible();
  await expect(page.getByRole("table", { name: "Gateways" }).getByRole("row")).toHaveCount(3);
});

test("a gateway name with markup is shown as text", async ({ page }) => {
  failOnPageErrors(page);
  let dialogs = 0;
  page.on("dialog", async (dialog) => {
    dialogs += 1;
    await dialog.dismiss();
  });
  const factoryId = await createFactory(page, unique("<script>alert('f')</script>"));
  const name = unique(`<script>alert(1)</script><img src=x onerror=alert(2)>`);
  const response = await page.request.post("/rpc/create_gateway", {
    form: {
      factory_id: factoryId,
      gateway_id: unique("GW-XSS").replace(/ /g, "-"),
      name,
      url: "ws://127.0.0.1:9",
      email: "admin@gateway.local",
      password: "gateway-pass",
      model: "",
      firmware_version: "",
    },
    headers: { Accept: "application/json" },
  });
  expect(response.status()).toBe(200);
  await page.goto(`/gateways?factory=${factoryId}`);
  await waitForHydration(page);
  await expect(page.getByRole("link", { name, exact: true })).toBeVisible();
  expect(dialogs).toBe(0);
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("a refused gateway form comes back filled in, except the password", async ({ page }) => {
    const factoryId = await createFactory(page, unique("No-JS Plant"));
    await page.goto(`/gateways?factory=${factoryId}`);
    const add = page.getByRole("form", { name: "Add gateway" });
    const gatewayId = unique("GW-NOJS").replace(/ /g, "-");
    await add.getByLabel("Gateway ID").fill(gatewayId);
    await add.getByLabel("Gateway name").fill("Kiln <fan> gateway");
    await add.getByLabel("Gateway URL").fill("http://not-a-websocket");
    await add.getByLabel("Email").fill("admin@gateway.local");
    await add.getByLabel("Password").fill("gateway-secret");
    await add.getByLabel("Model").fill("CTC-W100");
    await add.getByRole("button", { name: "Add gateway" }).click();
    await page.waitForURL("**/gateways?error=**");
    expect(page.url()).not.toContain("gateway-secret");
    await expect(page.getByRole("alert").filter({ hasText: "must start with ws:// or wss://" }).first()).toBeVisible();
    const again = page.getByRole("form", { name: "Add gateway" });
    await expect(again.getByLabel("Factory")).toHaveValue(factoryId);
    await expect(again.getByLabel("Gateway ID")).toHaveValue(gatewayId);
    await expect(again.getByLabel("Gateway name")).toHaveValue("Kiln <fan> gateway");
    await expect(again.getByLabel("Gateway URL")).toHaveValue("http://not-a-websocket");
    await expect(again.getByLabel("Email")).toHaveValue("admin@gateway.local");
    await expect(again.getByLabel("Model")).toHaveValue("CTC-W100");
    await expect(again.getByLabel("Password")).toHaveValue("");
  });
});

test("the table sorts by a column, filters by live state, and acts on a selection", async ({ page }) => {
  failOnPageErrors(page);
  const factoryId = await createFactory(page, unique("Bulk Plant"));
  const stamp = Date.now().toString(36);
  for (const letter of ["A", "B", "C"]) {
    const response = await page.request.post("/rpc/create_gateway", {
      form: {
        factory_id: factoryId,
        gateway_id: `GW-BULK-${stamp}-${letter}`,
        name: `Bulk gateway ${letter}`,
        url: "ws://127.0.0.1:9",
        email: "admin@gateway.local",
        password: "gateway-pass",
        model: "",
        firmware_version: "",
      },
      headers: { Accept: "application/json" },
    });
    expect(response.status(), await response.text()).toBe(200);
  }
  await page.goto(`/gateways?factory=${factoryId}`);
  await waitForHydration(page);
  const table = page.getByRole("table", { name: "Gateways" });
  const rows = table.locator("tbody tr");

  // Sorted on the server: by gateway id, then the other way round.
  await table.getByRole("link", { name: "Gateway ID" }).click();
  await expect(page).toHaveURL(/sort=gateway_id&order=asc/);
  // The sorted table is in (until then the old one, and its links, stay on screen).
  await expect(table.getByRole("columnheader", { name: /Gateway ID/ })).toHaveAttribute("aria-sort", "ascending");
  await expect(rows.first()).toContainText(`GW-BULK-${stamp}-A`);
  await table.getByRole("link", { name: /Gateway ID/ }).click();
  await expect(page).toHaveURL(/sort=gateway_id&order=desc/);
  await expect(rows.first()).toContainText(`GW-BULK-${stamp}-C`);
  await expect(table.getByRole("columnheader", { name: /Gateway ID/ })).toHaveAttribute("aria-sort", "descending");

  // All three selected and disabled at once; their badges follow live.
  await table.getByRole("checkbox", { name: "Select every gateway on this page" }).check();
  await expect(page.getByRole("group", { name: "Bulk actions" })).toContainText("3 selected");
  await page.getByRole("group", { name: "Bulk actions" }).getByRole("button", { name: "Disable" }).click();
  await expect(page.getByRole("status")).toContainText("Disable: 3 done");
  for (const letter of ["A", "B", "C"]) {
    await expect(page.getByRole("row", { name: new RegExp(`GW-BULK-${stamp}-${letter}`) }).locator("[data-state]")).toHaveAttribute(
      "data-state",
      "disabled",
    );
  }

  // The state filter lists what is in that state now; one is enabled again.
  await page.locator("#gateway-state-filter").selectOption("disabled");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(/state=disabled/);
  await expect(page.getByRole("heading", { name: "3 gateways" })).toBeVisible();
  await table.getByRole("checkbox", { name: `Select GW-BULK-${stamp}-B` }).check();
  await page.getByRole("group", { name: "Bulk actions" }).getByRole("button", { name: "Enable" }).click();
  await expect(page.getByRole("status")).toContainText("Enable: 1 done");
  await expect(page.getByRole("heading", { name: "2 gateways" })).toBeVisible();
});
