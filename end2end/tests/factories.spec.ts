import { expect, test } from "@playwright/test";
import { failOnPageErrors, screenshot, unique, waitForHydration } from "./helpers";

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
});

test("unknown pages answer 404 with a way back", async ({ page }) => {
  const response = await page.goto("/no-such-page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "404" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Back to factories" })).toBeVisible();
});
