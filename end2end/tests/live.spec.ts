import { expect, test } from "@playwright/test";
import { ADMIN, failOnPageErrors, screenshot, signIn, waitForHydration } from "./helpers";

// The server runs in demo mode (playwright.config.ts): the demo plant's gateways
// are served by simulators in the server process, with this password.
const DEMO_PASSWORD = "demo-gateway-pass";

function origin(): Record<string, string> {
  return { Origin: test.info().project.use.baseURL as string };
}

test("the status page follows a gateway going down and coming back, without reloading", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, ADMIN.email, ADMIN.password, "/");
  await waitForHydration(page);
  const row = page.locator('tr[data-gateway="GW-SPR-001"]');
  await expect(row).toHaveAttribute("data-state", "online", { timeout: 20_000 });
  await expect(page.locator(".live-indicator")).toHaveAttribute("data-link", "live");
  await screenshot(page, "status");
  const id = (await row.getByRole("link").getAttribute("href"))!.split("/").pop();
  let navigations = 0;
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });

  // The gateway refuses us once its stored password is wrong...
  const broken = await page.request.patch(`/api/gateways/${id}`, { data: { password: "wrong" }, headers: origin() });
  expect(broken.status(), await broken.text()).toBe(200);
  await expect(row).toHaveAttribute("data-state", "auth_failed", { timeout: 15_000 });
  await expect(row).toContainText("Login refused");
  await expect(row).toContainText("next retry in");

  // ...and is back online once it is fixed.
  const fixed = await page.request.patch(`/api/gateways/${id}`, { data: { password: DEMO_PASSWORD }, headers: origin() });
  expect(fixed.status(), await fixed.text()).toBe(200);
  await expect(row).toHaveAttribute("data-state", "online", { timeout: 15_000 });
  expect(navigations, "updates arrive without a reload").toBe(0);
});

test("status filters are kept in the URL", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, ADMIN.email, ADMIN.password, "/");
  await waitForHydration(page);
  await page.getByLabel("State", { exact: true }).selectOption("disabled");
  await page.getByLabel("Search", { exact: true }).fill("loading");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(page).toHaveURL(/state=disabled/);
  await page.reload();
  await expect(page.getByLabel("State", { exact: true })).toHaveValue("disabled");
  await expect(page.locator("tr[data-gateway]")).toHaveCount(1);
  await expect(page.locator('tr[data-gateway="GW-DET-006"]')).toHaveAttribute("data-state", "disabled");
});

test("taking a reading shows its progress, then the waveform and spectrum", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, ADMIN.email, ADMIN.password, "/");
  const row = page.locator('tr[data-gateway="GW-SPR-002"]');
  await expect(row).toHaveAttribute("data-state", "online", { timeout: 20_000 });
  await row.getByRole("link").click();
  await waitForHydration(page);
  const sensor = page.locator("tr[data-serial]").filter({ has: page.locator("button:enabled") }).first();
  const readings = page.getByRole("table", { name: "Readings" }).locator("tbody tr");
  const before = await readings.count();
  await sensor.getByRole("button", { name: "Take reading" }).click();
  await expect(sensor.locator(".reading-progress")).toContainText("received", { timeout: 20_000 });

  // The new reading is in the list, plots one click away, without a reload.
  await expect(readings).toHaveCount(Math.min(before + 1, 20));
  await expect(readings.first()).toContainText("finished");
  await readings.first().getByRole("link", { name: "Plot" }).click();
  await expect(page).toHaveURL(/reading=/);
  for (const axis of ["X", "Y", "Z"]) {
    await expect(page.getByRole("img", { name: `${axis} waveform` })).toBeVisible();
    await expect(page.getByRole("img", { name: `${axis} spectrum` })).toBeVisible();
  }
  // The demo motor sensor runs at 29.6 Hz; the spectrum names its peaks.
  await expect(page.locator("figcaption").filter({ hasText: "spectrum" }).first()).toContainText(" Hz (");
  await screenshot(page, "waveform");
});

test("the gateways table shows each gateway's live state", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, ADMIN.email, ADMIN.password, "/gateways");
  // Other tests add gateways too: look at each demo factory's own list.
  const factories = await (await page.request.get("/api/factories?search=Detroit%20Assembly")).json();
  await page.goto(`/gateways?factory=${factories.data[0].id}`);
  // GW-DET-006 is created disabled; GW-DET-001 connects to its simulator.
  await expect(page.getByRole("row", { name: /GW-DET-006/ }).locator("[data-state]")).toHaveAttribute("data-state", "disabled");
  await expect(page.getByRole("row", { name: /GW-DET-001/ }).locator("[data-state]")).toHaveAttribute(
    "data-state",
    /online|connecting|authenticating/,
  );
});

test("the gateways table follows a gateway's state without reloading", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, ADMIN.email, ADMIN.password, "/gateways");
  const factories = await (await page.request.get("/api/factories?search=Detroit%20Assembly")).json();
  await page.goto(`/gateways?factory=${factories.data[0].id}`);
  await waitForHydration(page);
  const row = page.getByRole("row", { name: /GW-DET-002/ });
  const badge = row.locator("[data-state]");
  await expect(badge).toHaveAttribute("data-state", "online", { timeout: 20_000 });
  const id = (await row.getByRole("link", { name: /./ }).first().getAttribute("href"))!.split("/").pop();
  let navigations = 0;
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });

  const off = await page.request.post(`/api/gateways/${id}/disconnect`, { headers: origin() });
  expect(off.status(), await off.text()).toBe(200);
  await expect(badge).toHaveAttribute("data-state", "disabled", { timeout: 15_000 });
  const on = await page.request.post(`/api/gateways/${id}/connect`, { headers: origin() });
  expect(on.status(), await on.text()).toBe(200);
  await expect(badge).toHaveAttribute("data-state", "online", { timeout: 15_000 });
  expect(navigations, "updates arrive without a reload").toBe(0);
});
