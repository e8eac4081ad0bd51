import { expect, test } from "@playwright/test";
import { createFactory, failOnPageErrors, screenshot, signIn, unique, waitForHydration } from "./helpers";

// Every page but /login needs a signed-in user.
test.beforeEach(async ({ page }) => {
  await signIn(page);
});

test.describe("factories page", () => {
  test("creates a factory without reloading and keeps it after a reload", async ({ page }) => {
    failOnPageErrors(page);
    await page.goto("/factories");
    await waitForHydration(page);
    const name = unique("Springfield Plant");
    let navigations = 0;
    page.on("framenavigated", (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });

    await page.getByLabel("Factory name").fill(name);
    await page.getByLabel("Location").fill("Building 3, Springfield, IL");
    await page.getByLabel("Time zone").fill("America/Chicago");
    await page.getByRole("button", { name: "Add factory" }).click();

    const row = page.getByRole("row", { name: new RegExp(name) });
    await expect(row).toBeVisible();
    await expect(row).toContainText("America/Chicago");
    await expect(page.getByRole("status")).toContainText(name);
    expect(navigations, "the hydrated form must not reload the page").toBe(0);
    await screenshot(page, "factories-created");

    await page.reload();
    await expect(page.getByRole("row", { name: new RegExp(name) })).toBeVisible();
  });

  test("shows the server's validation message inline", async ({ page }) => {
    failOnPageErrors(page);
    await page.goto("/factories");
    await waitForHydration(page);
    await page.getByLabel("Factory name").fill(unique("Bad zone"));
    await page.getByLabel("Time zone").fill("Mars/Olympus_Mons");
    await page.getByRole("button", { name: "Add factory" }).click();
    await expect(page.locator("#field-timezone-error")).toContainText("must be an IANA time zone");
    await expect(page.getByLabel("Time zone")).toHaveAttribute("aria-invalid", "true");
  });

  test("names with markup are shown as text", async ({ page }) => {
    failOnPageErrors(page);
    let dialogs = 0;
    page.on("dialog", async (dialog) => {
      dialogs += 1;
      await dialog.dismiss();
    });
    await page.goto("/factories");
    await waitForHydration(page);
    const name = unique(`<script>alert(1)</script><b>x</b>`);
    await page.getByLabel("Factory name").fill(name);
    await page.getByRole("button", { name: "Add factory" }).click();
    await expect(page.getByRole("cell", { name, exact: true })).toBeVisible();
    await page.reload();
    await expect(page.getByRole("cell", { name, exact: true })).toBeVisible();
    expect(dialogs).toBe(0);
  });
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the form still creates a factory", async ({ page }) => {
    await page.goto("/factories");
    const name = unique("No-JS Works");
    await page.getByLabel("Factory name").fill(name);
    await page.getByRole("button", { name: "Add factory" }).click();
    await page.waitForURL("**/factories**");
    await expect(page.getByRole("row", { name: new RegExp(name) })).toBeVisible();
  });

  test("a refused form says why and keeps what was typed", async ({ page }) => {
    await page.goto("/factories");
    const name = unique("No-JS Bad Zone <b>");
    await page.getByLabel("Factory name").fill(name);
    await page.getByLabel("Location").fill("Hall 3 & yard");
    await page.getByLabel("Time zone").fill("Mars/Olympus_Mons");
    await page.getByRole("button", { name: "Add factory" }).click();
    await page.waitForURL("**/factories?error=**");
    await expect(page.getByRole("alert").filter({ hasText: "must be an IANA time zone" })).toBeVisible();
    await expect(page.getByLabel("Factory name")).toHaveValue(name);
    await expect(page.getByLabel("Location")).toHaveValue("Hall 3 & yard");
    await expect(page.getByLabel("Time zone")).toHaveValue("Mars/Olympus_Mons");
    // Corrected, it goes through.
    await page.getByLabel("Time zone").fill("Europe/Berlin");
    await page.getByRole("button", { name: "Add factory" }).click();
    await expect(page.getByRole("row", { name: new RegExp(name.replace(/[<>]/g, ".")) })).toBeVisible();
  });
});

test.describe("editing and deleting", () => {
  test("edits a factory inline and shows the server's message for a bad value", async ({ page }) => {
    failOnPageErrors(page);
    const name = unique("Edit Me");
    await createFactory(page, name);
    await page.goto(`/factories?q=${encodeURIComponent(name)}`);
    await waitForHydration(page);
    await page.getByRole("row", { name: new RegExp(name) }).getByRole("link", { name: "Edit" }).click();
    const form = page.getByRole("form", { name: "Edit factory" });
    await expect(form.getByLabel("Factory name")).toHaveValue(name);
    await form.getByLabel("Time zone").fill("Not/AZone");
    await form.getByRole("button", { name: "Save changes" }).click();
    await expect(form.getByText("must be an IANA time zone")).toBeVisible();
    // The rejected value is still there to correct: nothing typed is lost.
    await expect(form.getByLabel("Time zone")).toHaveValue("Not/AZone");
    const renamed = `${name} renamed`;
    await form.getByLabel("Factory name").fill(renamed);
    await form.getByLabel("Time zone").fill("Europe/Berlin");
    await form.getByRole("button", { name: "Save changes" }).click();
    await expect(page.getByRole("status")).toContainText(`Factory “${renamed}” saved.`);
    await expect(page).not.toHaveURL(/edit=/);
    await page.goto(`/factories?q=${encodeURIComponent(renamed)}`);
    await expect(page.getByRole("row", { name: new RegExp(renamed) })).toContainText("Europe/Berlin");
  });

  test("deletes a factory after a confirmation that counts its gateways", async ({ page }) => {
    failOnPageErrors(page);
    const name = unique("Doomed Plant");
    const factoryId = await createFactory(page, name);
    for (const n of [1, 2]) {
      const response = await page.request.post("/rpc/create_gateway", {
        form: {
          factory_id: factoryId,
          gateway_id: unique(`GW-DEL-${n}`).replace(/ /g, "-"),
          name: `Doomed gateway ${n}`,
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
    await page.goto(`/factories?q=${encodeURIComponent(name)}`);
    await waitForHydration(page);
    const row = page.getByRole("row", { name: new RegExp(name) });
    await row.getByText("Delete", { exact: true }).click();
    await expect(row).toContainText(`Delete “${name}” and its 2 gateways? This cannot be undone.`);
    await row.getByRole("button", { name: "Delete factory" }).click();
    await expect(page.getByRole("status")).toContainText(`Factory “${name}” and its 2 gateways deleted.`);
    await expect(page.getByRole("row", { name: new RegExp(name) })).toHaveCount(0);
  });

  test("the search is in the URL and survives a reload", async ({ page }) => {
    const name = unique("Searchable");
    await createFactory(page, name);
    await createFactory(page, unique("Other"));
    await page.goto("/factories");
    await waitForHydration(page);
    await page.getByLabel("Search factories").fill(name);
    await page.getByRole("button", { name: "Search" }).click();
    await expect(page).toHaveURL(new RegExp(`q=${encodeURIComponent(name).replace(/%20/g, "(\\+|%20)")}`));
    await page.reload();
    await expect(page.getByLabel("Search factories")).toHaveValue(name);
    await expect(page.getByRole("table", { name: "Factories" }).getByRole("row")).toHaveCount(2);
  });
});

test("unknown pages answer 404 with a way back", async ({ page }) => {
  const response = await page.goto("/no-such-page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "404" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Back to factories" })).toBeVisible();
});
