import AxeBuilder from "@axe-core/playwright";
import { expect, Page, test } from "@playwright/test";
import { signIn, waitForHydration } from "./helpers";

/** Serious and critical findings of an axe-core scan of the page as it is now. */
async function seriousFindings(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((violation) => violation.impact === "serious" || violation.impact === "critical")
    .map((violation) => `${violation.id}: ${violation.nodes.map((node) => node.target.join(" ")).join(", ")}`);
}

// Every page, new ones included: a page missing here is a page nobody scanned.
test("every page passes an accessibility scan", async ({ page }) => {
  await page.goto("/login");
  expect(await seriousFindings(page), "/login").toEqual([]);
  await signIn(page);
  const gateways = await page.request.get("/api/gateways?limit=1");
  const gateway = (await gateways.json()).data[0].id;
  // Demo mode creates its machines once their gateway has reported its sensors.
  let machine = "";
  await expect
    .poll(async () => {
      machine = (await (await page.request.get("/api/machines?limit=1")).json()).data[0]?.id ?? "";
      return machine;
    }, { timeout: 60_000 })
    .not.toBe("");
  const pages = ["/", "/?group=machine", "/factories", "/gateways", `/gateways/${gateway}`, "/machines", `/machines/${machine}`];
  for (const path of [...pages, "/users", "/tokens", "/account"]) {
    await page.goto(path);
    await waitForHydration(page);
    expect(await seriousFindings(page), path).toEqual([]);
  }
});
