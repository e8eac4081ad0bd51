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

/** The id of the first row of an API list, waiting for one to exist (demo mode creates its
 *  machines once their gateway has reported its sensors). */
async function firstId(page: Page, list: string): Promise<string> {
  let id = "";
  await expect
    .poll(async () => {
      id = (await (await page.request.get(`${list}?limit=1`)).json()).data[0]?.id ?? "";
      return id;
    }, { timeout: 60_000 })
    .not.toBe("");
  return id;
}

test("the sign-in page passes an accessibility scan", async ({ page }) => {
  await page.goto("/login");
  expect(await seriousFindings(page), "/login").toEqual([]);
});

// Every signed-in page, new ones included: a page missing here is a page nobody scanned.
// One test per page, so a slow scan of one page does not eat the others' time.
const signedInPages: [string, (page: Page) => Promise<string>][] = [
  ["status", async () => "/"],
  ["status by machine", async () => "/?group=machine"],
  ["factories", async () => "/factories"],
  ["gateways", async () => "/gateways"],
  ["a gateway", async (page) => `/gateways/${await firstId(page, "/api/gateways")}`],
  ["machines", async () => "/machines"],
  ["a machine", async (page) => `/machines/${await firstId(page, "/api/machines")}`],
  ["alarms", async () => "/alarms"],
  ["an alarm", async (page) => `/alarms/${await firstId(page, "/api/alarms")}`],
  ["alarm rules", async () => "/alarm-rules"],
  ["notification channels", async () => "/notification-channels"],
  ["users", async () => "/users"],
  ["tokens", async () => "/tokens"],
  ["account", async () => "/account"],
];

for (const [name, pathOf] of signedInPages) {
  test(`the ${name} page passes an accessibility scan`, async ({ page }) => {
    test.setTimeout(90_000);
    await signIn(page);
    const path = await pathOf(page);
    await page.goto(path);
    await waitForHydration(page);
    expect(await seriousFindings(page), path).toEqual([]);
  });
}
