import { expect, test } from "@playwright/test";
import {
  createUser,
  expectNoHorizontalScroll,
  failOnPageErrors,
  screenshot,
  signIn,
  unique,
  waitForHydration,
} from "./helpers";

// The server runs in demo mode (playwright.config.ts). GW-SPR-003's simulated sensors
// (serials 40021–40023, all connected) sit on no demo machine: each screen size puts one
// of them on a new machine.
const sizes = [
  { name: "desktop", width: 1920, height: 1080, serial: 40021 },
  { name: "tablet", width: 768, height: 1024, serial: 40022 },
  { name: "phone", width: 390, height: 844, serial: 40023 },
];

for (const size of sizes) {
  test(`a machine: create it, put a sensor on it, read its trend and the waveform behind a point (${size.name})`, async ({
    page,
  }) => {
    failOnPageErrors(page);
    await page.setViewportSize({ width: size.width, height: size.height });
    await signIn(page, undefined, undefined, "/machines");
    await waitForHydration(page);

    // Create: the form leads to the new machine's page.
    const name = unique("Cooling pump");
    const form = page.getByRole("form", { name: "Add machine" });
    await form.getByLabel("Factory").selectOption({ label: "Springfield Plant" });
    await form.getByLabel("Machine name").fill(name);
    await form.getByLabel("Kind").selectOption("pump");
    await form.getByLabel("Rated speed (RPM)").fill("not a number");
    await form.getByRole("button", { name: "Add machine" }).click();
    // Bad input: the field says why, and nothing typed is lost.
    await expect(form.locator("#field-rpm-error")).toContainText("must be a number");
    await expect(form.getByLabel("Machine name")).toHaveValue(name);
    await form.getByLabel("Rated speed (RPM)").fill("1480");
    await form.getByLabel("ISO 20816 machine group").selectOption("2");
    await form.getByRole("button", { name: "Add machine" }).click();
    await page.waitForURL(/\/machines\/[0-9a-f-]{36}$/);
    await expect(page.getByRole("heading", { level: 1 })).toHaveText(name);
    await expect(page.locator(".subtitle")).toContainText("ISO 20816 group 2");

    // Assign a sensor; the same sensor on a second point is refused.
    const points = page.getByRole("table", { name: "Measurement points" });
    const add = page.getByRole("form", { name: "Add measurement point" });
    await add.getByLabel("Point name").fill("Pump drive end, horizontal");
    await add.getByLabel("Sensor serial").fill(String(size.serial));
    await add.getByRole("button", { name: "Add point" }).click();
    const row = points.locator(`tr[data-serial="${size.serial}"]`);
    await expect(row).toContainText("Pump drive end, horizontal");
    await expect(row).toContainText("Boiler House Gateway");
    await add.getByLabel("Point name").fill("The same sensor again");
    await add.getByLabel("Sensor serial").fill(String(size.serial));
    await add.getByRole("button", { name: "Add point" }).click();
    await expect(add.getByRole("alert").filter({ hasText: "already sits on another" })).toBeVisible();
    await expect(points.locator("tbody tr")).toHaveCount(1);

    // No readings yet; take one and its point appears in the trend without a reload.
    await page.getByLabel("Range").selectOption("24h");
    await page.getByRole("button", { name: "Show" }).click();
    await expect(page).toHaveURL(/range=24h/);
    await expect(page.getByText("No readings in this range.")).toBeVisible();
    await row.getByRole("button", { name: "Take reading" }).click();
    await expect(row.locator(".reading-progress")).toContainText("received", { timeout: 20_000 });
    const hit = page.locator(".trend-hit");
    await expect(hit).toHaveCount(1);
    await expect(hit).toHaveAttribute("aria-label", /mm\/s/);
    await expectNoHorizontalScroll(page);

    // A point opens the reading behind it: waveform and spectrum per axis.
    await hit.click();
    await expect(page).toHaveURL(/reading=[0-9a-f-]{36}/);
    await expect(page).toHaveURL(/range=24h/);
    for (const axis of ["X", "Y", "Z"]) {
      await expect(page.getByRole("img", { name: `${axis} waveform` })).toBeVisible();
      await expect(page.getByRole("img", { name: `${axis} spectrum` })).toBeVisible();
    }
    // Velocity has the ISO zones of group 2 behind it; other values can be chosen.
    await expect(page.locator(".trend .zone")).toHaveCount(4);
    await page.getByLabel("Value").selectOption("temperature");
    await page.getByRole("button", { name: "Show" }).click();
    await expect(page.locator(".trend figcaption")).toContainText("Temperature (°C)");
    await expect(page.locator(".trend .zone")).toHaveCount(0);
    await expect(page.locator(".trend-hit")).toHaveCount(1);
    await expectNoHorizontalScroll(page);
    await screenshot(page, `${size.name}-machine`);

    // A schedule: hourly, switched on.
    const schedule = page.getByRole("form", { name: "Schedule of Pump drive end, horizontal" });
    await schedule.getByRole("checkbox").check();
    await schedule.getByLabel("Minutes between readings").fill("60");
    await schedule.getByRole("button", { name: "Save" }).click();
    await expect
      .poll(async () => (await (await page.request.get(`/api/sensors/${size.serial}/schedule`)).json()).enabled)
      .toBe(true);
    const ownSchedule = async () => (await (await page.request.get(`/api/sensors/${size.serial}/schedule`)).json());

    // Back to the defaults, then a default for the machine: its sensors follow it.
    await schedule.getByRole("button", { name: "Save" }).waitFor();
    await row.getByRole("button", { name: "Use default" }).click();
    await expect.poll(async () => (await ownSchedule()).source).toBe("none");
    const defaults = page.getByRole("form", { name: "Machine default schedule" });
    await defaults.getByRole("checkbox").check();
    await defaults.getByLabel("Default minutes between readings").fill("120");
    await defaults.getByRole("button", { name: "Save default" }).click();
    await expect(row).toContainText("machine default");
    const followed = await ownSchedule();
    expect([followed.interval_seconds, followed.enabled, followed.source]).toEqual([7200, true, "machine"]);

    // The list shows it; deleting it frees the sensor.
    await page.goto("/machines");
    await expect(page.getByRole("link", { name })).toBeVisible();
    await expectNoHorizontalScroll(page);
    await page.getByRole("link", { name }).click();
    await waitForHydration(page);
    await page.locator("summary", { hasText: "Delete machine" }).click();
    await page.getByRole("button", { name: "Delete machine" }).click();
    await page.waitForURL(/\/machines$/);
    await expect(page.getByRole("link", { name })).toHaveCount(0);
  });
}

test("the demo machines have weeks of history to trend", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, undefined, undefined, "/machines");
  await page.getByRole("link", { name: "Press line drive" }).click();
  await page.waitForURL(/\/machines\/[0-9a-f-]{36}/);
  await waitForHydration(page);
  const machineUrl = page.url();
  // 30 days by default: three weeks of hourly values, bucketed, one plot per point.
  await expect(page.locator(".trend")).toHaveCount(3);
  expect(await page.locator(".trend").first().locator(".trend-hit").count()).toBeGreaterThan(100);
  await expect(page.locator(".trend .zone").first()).toBeVisible();
  await expect(page.getByRole("form", { name: "Add measurement point" })).toBeVisible();

  // The status page grouped by machine: each with its points' latest velocity and zone.
  await page.goto("/?group=machine");
  await waitForHydration(page);
  const machines = page.getByRole("table", { name: "Machines by condition" });
  const press = machines.getByRole("row").filter({ hasText: "Press line drive" });
  await expect(press).toContainText(/Motor drive end: \d+\.\d\d mm\/s/);
  await expect(press.locator(".zone-badge")).toHaveText(/Zone [A-D]/);
  await press.getByRole("link", { name: "Press line drive" }).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Press line drive");

  // A viewer sees the trends but none of the controls that change the machine.
  const viewer = await createUser(page, "viewer");
  const url = machineUrl;
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(page, viewer, "viewer-password-1", "/machines");
  await page.goto(url);
  await waitForHydration(page);
  await expect(page.locator(".trend")).toHaveCount(3);
  await expect(page.getByRole("form", { name: "Add measurement point" })).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Take reading" })).toHaveCount(0);
  await expect(page.getByText("Delete machine")).toHaveCount(0);
  await expect(page.getByRole("table", { name: "Measurement points" })).toContainText("every 1 h");
});
