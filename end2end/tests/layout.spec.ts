import { expect, test } from "@playwright/test";
import {
  ADMIN,
  callServerFn,
  createFactory,
  expectNoHorizontalScroll,
  failOnPageErrors,
  screenshot,
  signIn,
  unique,
  waitForHydration,
} from "./helpers";

const sizes = [
  { name: "desktop", width: 1920, height: 1080 },
  { name: "tablet", width: 768, height: 1024 },
  { name: "phone", width: 390, height: 844 },
];

for (const size of sizes) {
  test(`no horizontal scroll at ${size.width}×${size.height}`, async ({ page }) => {
    failOnPageErrors(page);
    await page.setViewportSize({ width: size.width, height: size.height });
    await signIn(page);
    // Long values must wrap, not widen the page.
    const factoryId = await createFactory(page, unique("A factory with a rather long name to wrap"));
    await page.request.post("/rpc/create_gateway", {
      form: {
        factory_id: factoryId,
        gateway_id: unique("GW-LAYOUT").replace(/ /g, "-"),
        name: "Gateway with a long name for the layout check",
        url: "ws://127.0.0.1:9/a-long-path/that-makes-the-url-column-wide/enough-to-test-wrapping",
        email: "admin@gateway.local",
        password: "gateway-pass",
        model: "CTC Connect Wireless",
        firmware_version: "1.2.3",
      },
      headers: { Accept: "application/json" },
    });
    for (const path of ["/factories", "/gateways", "/users", "/tokens", "/login"]) {
      await page.goto(path);
      await waitForHydration(page);
      await expectNoHorizontalScroll(page);
      await screenshot(page, `${size.name}${path.replace(/\//g, "-")}`);
    }
    // Below 768 px the navigation is a top bar above the content, not a sidebar.
    await page.goto("/factories");
    const bar = await page.locator("header.topbar").boundingBox();
    const content = await page.locator("main.content").boundingBox();
    if (size.width < 768) {
      expect(bar!.width).toBeGreaterThanOrEqual(size.width - 1);
      expect(content!.y).toBeGreaterThanOrEqual(bar!.y + bar!.height - 1);
    } else {
      expect(content!.x).toBeGreaterThanOrEqual(bar!.x + bar!.width - 1);
    }
  });
}

// The release wasm is split per page (`cargo leptos build --split`): the browser
// fetches a page's code when that page is first shown, and only then.
test("each page's code is loaded on its first visit only", async ({ page }) => {
  failOnPageErrors(page);
  // Signed in without loading any page, so no page's code is cached yet.
  const signedIn = await callServerFn(page, "sign_in", { email: ADMIN.email, password: ADMIN.password });
  expect(signedIn.ok()).toBe(true);
  const fetched: string[] = [];
  page.on("request", (request) => {
    const file = request.url().split("/").pop() ?? "";
    if (file.endsWith(".wasm")) fetched.push(file);
  });
  await page.goto("/");
  await waitForHydration(page);
  await expect(page.locator(".summary")).toBeVisible();
  expect(fetched.some((f) => f.startsWith("split___status_route_view"))).toBe(true);
  expect(fetched.some((f) => f.startsWith("split___factories_route_view"))).toBe(false);
  expect(fetched.some((f) => f.startsWith("split___users_route_view"))).toBe(false);

  // Client-side navigation brings the next page's code, and the page works.
  await page.getByRole("link", { name: "Factories", exact: true }).click();
  await expect(page.getByRole("heading", { name: "Factories", exact: true })).toBeVisible();
  await expect.poll(() => fetched.some((f) => f.startsWith("split___factories_route_view"))).toBe(true);
  expect(fetched.some((f) => f.startsWith("split___users_route_view"))).toBe(false);
});
