import { expect, test } from "@playwright/test";
import { failOnPageErrors, signIn, unique, waitForHydration } from "./helpers";

// The server runs in demo mode (playwright.config.ts). GW-SPR-002 is online from the
// start; its first sensor gets a threshold rule so low that any reading crosses it.
test("an alarm appears live with the navigation's count, is acknowledged with a note, and shows its waveform", async ({
  page,
}) => {
  test.setTimeout(90_000);
  failOnPageErrors(page);
  await signIn(page, undefined, undefined, "/alarms");
  await waitForHydration(page);

  const gateways = (await (await page.request.get("/api/gateways?limit=100")).json()).data;
  const gateway = gateways.find((g: { gateway_id: string }) => g.gateway_id === "GW-SPR-002");
  let serial = 0;
  await expect
    .poll(async () => {
      const sensors = await (await page.request.get(`/api/gateways/${gateway.id}/sensors`)).json();
      serial = (sensors.data ?? sensors)[0]?.serial ?? 0;
      return serial;
    }, { timeout: 60_000 })
    .toBeGreaterThan(0);
  const name = unique("Any vibration at all");
  const rule = await page.request.post("/api/alarm-rules", {
    data: { kind: "threshold", name, severity: "critical", serial, value: "accel_rms", alert: 0.000001 },
  });
  expect(rule.status(), await rule.text()).toBe(201);

  // A reading from elsewhere (the API): the alarm shows up here without a reload.
  const reading = await page.request.post(`/api/gateways/${gateway.id}/sensors/${serial}/readings`);
  expect(reading.status(), await reading.text()).toBe(202);
  const row = page.getByRole("row", { name: new RegExp(`Sensor ${serial}: accel_rms`) }).first();
  await expect(row).toBeVisible({ timeout: 30_000 });
  await expect(row).toContainText("Active");
  // The navigation counts it, as the API does.
  const badge = page.locator("nav .nav-count");
  await expect
    .poll(async () => {
      const counts = await (await page.request.get("/api/alarms/counts")).json();
      return (await badge.textContent()) === String(counts.active);
    }, { timeout: 15_000 })
    .toBe(true);

  // Acknowledged with a note, from the list.
  await row.getByRole("checkbox").check();
  const form = page.getByRole("form", { name: "Acknowledge alarms" });
  await form.getByLabel("Note").fill("Checked by the night shift");
  await form.getByRole("button", { name: /Acknowledge selected/ }).click();
  await expect(row).toContainText("Acknowledged");
  await expect(row).toContainText("Checked by the night shift");

  // Its page: the timeline and the waveform behind it.
  await row.getByRole("link", { name: new RegExp(`Sensor ${serial}`) }).first().click();
  await page.waitForURL("**/alarms/*");
  await expect(page.getByRole("heading", { level: 1 })).toContainText(`Sensor ${serial}`);
  await expect(page.locator(".timeline")).toContainText("Acknowledged by admin@factory-monitor.local");
  await expect(page.getByRole("region", { name: "Waveform and spectrum" })).toBeVisible();
  await expect(page.locator(".plots svg").first()).toBeVisible();

  // A viewer may acknowledge but sees no channel settings.
  const cleanup = await page.request.get("/api/alarm-rules?limit=100");
  const ruleId = (await cleanup.json()).data.find((r: { name: string }) => r.name === name).id;
  expect((await page.request.delete(`/api/alarm-rules/${ruleId}`)).status()).toBe(204);
});

test("rules and channels are managed by administrators, with a test notification logged", async ({ page }) => {
  failOnPageErrors(page);
  await signIn(page, undefined, undefined, "/notification-channels");
  await waitForHydration(page);
  // The demo's own receiver is listed; a test notification is delivered and logged.
  const demo = page.getByRole("region", { name: /Channel Demo receiver/ });
  await demo.getByRole("button", { name: "Send test" }).click();
  await expect
    .poll(async () => {
      await demo.getByRole("button", { name: "Refresh log" }).click();
      return await demo.locator("tr", { hasText: "test" }).first().textContent();
    }, { timeout: 20_000 })
    .toContain("delivered");

  // A bad webhook URL is refused by field, nothing typed lost.
  const form = page.getByRole("form", { name: "Add channel" });
  const hook = unique("Broken hook");
  await form.getByLabel("Name").fill(hook);
  await form.getByLabel("Webhook URL").fill("ftp://nowhere");
  await form.getByRole("button", { name: "Add channel" }).click();
  await expect(form.locator("#field-url-error")).toContainText("http");
  await expect(form.getByLabel("Name")).toHaveValue(hook);

  // An e-mail channel for critical alarms only; then renamed, its settings kept.
  await form.getByLabel("Kind").selectOption("email");
  await form.getByLabel("Webhook URL").fill("");
  await form.getByLabel("E-mail to").fill("maintenance@plant.example");
  await form.getByLabel("Warnings").uncheck();
  await form.getByRole("button", { name: "Add channel" }).click();
  const mail = page.getByRole("region", { name: `Channel ${hook}` });
  await expect(mail).toContainText("email to maintenance@plant.example · critical");
  await mail.getByRole("link", { name: "Edit" }).click();
  const edit = page.getByRole("form", { name: "Edit channel" });
  await expect(edit.getByLabel("Warnings")).not.toBeChecked();
  const renamed = unique("Night shift");
  await edit.getByLabel("Name").fill(renamed);
  await edit.getByRole("button", { name: "Save changes" }).click();
  const renamedCard = page.getByRole("region", { name: `Channel ${renamed}` });
  await expect(renamedCard).toContainText("email to maintenance@plant.example · critical");
  await expect(page.getByRole("form", { name: "Add channel" })).toBeVisible();
  await renamedCard.getByRole("button", { name: "Delete" }).click();
  await expect(renamedCard).toHaveCount(0);

  await page.goto("/alarm-rules");
  await waitForHydration(page);
  const rules = page.getByRole("form", { name: "Add rule" });
  await rules.getByLabel("Kind").selectOption("gateway_offline");
  const ruleName = unique("Down for ten minutes");
  await rules.getByLabel("Name").fill(ruleName);
  await rules.getByLabel("Delay (seconds)").fill("600");
  await rules.getByRole("button", { name: "Add rule" }).click();
  const row = page.getByRole("row", { name: new RegExp(ruleName) });
  await expect(row).toContainText("Gateway offline for 600 s");
  await row.getByRole("link", { name: "Edit" }).click();
  const editRule = page.getByRole("form", { name: "Edit rule" });
  await expect(editRule.getByLabel("Delay (seconds)")).toHaveValue("600");
  await editRule.getByLabel("Delay (seconds)").fill("900");
  await editRule.getByRole("button", { name: "Save changes" }).click();
  await expect(row).toContainText("Gateway offline for 900 s");
  await expect(page).not.toHaveURL(/edit=/);
  await row.getByRole("button", { name: "Delete" }).click();
  await expect(row).toHaveCount(0);

  // A velocity rule on a machine with an ISO 20816 group takes its zone boundaries.
  await rules.getByLabel("Kind").selectOption("threshold");
  const isoName = unique("Fan vibration");
  await rules.getByLabel("Name").fill(isoName);
  await rules.getByLabel("Delay (seconds)").fill("");
  const machine = rules.getByLabel("Machine");
  const fan = machine.locator("option", { hasText: "Main floor exhaust fan" });
  await expect(fan).toContainText("ISO group");
  await machine.selectOption((await fan.getAttribute("value"))!);
  await rules.getByLabel("Value (thresholds)").selectOption("velocity_rms");
  await rules.getByRole("button", { name: "Add rule" }).click();
  const isoRow = page.getByRole("row", { name: new RegExp(isoName) });
  await expect(isoRow).toContainText("alert 4.5 mm/s, danger 7.1 mm/s");
  await expect(isoRow).toContainText("One machine");
  await isoRow.getByRole("button", { name: "Delete" }).click();
  await expect(isoRow).toHaveCount(0);

  // The list sorts as asked, and the choice is in the URL.
  await page.goto("/alarms");
  await waitForHydration(page);
  await page.getByLabel("Sort").selectOption("severity");
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForURL(/sort=severity/);
  await expect(page.getByLabel("Sort")).toHaveValue("severity");
});
