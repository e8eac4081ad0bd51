import { expect, Page } from "@playwright/test";

/** Fails the test on any uncaught error in the page (a broken hydration shows up here). */
export function failOnPageErrors(page: Page): void {
  page.on("pageerror", (error) => {
    throw new Error(`page error: ${error.message}`);
  });
}

/** Waits until the wasm app, and the current page's own lazily loaded code, have taken over the server-rendered HTML. */
export async function waitForHydration(page: Page): Promise<void> {
  await expect(page.locator("[data-hydrated=true][data-page-hydrated=true]")).toHaveCount(1);
}

/** A name no other test run has used. */
export function unique(prefix: string): string {
  return `${prefix} ${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });
}

/** The administrator the server creates on first start (playwright.config.ts sets the password). */
export const ADMIN = {
  email: "admin@factory-monitor.local",
  password: process.env.E2E_ADMIN_PASSWORD ?? "e2e-admin-password",
};

/** Signs in through the sign-in page and waits for the page it leads to. */
export async function signIn(page: Page, email = ADMIN.email, password = ADMIN.password, next = "/factories"): Promise<void> {
  await page.goto(`/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => url.pathname === next.split("?")[0]);
  await expect(page.locator(".account-email")).toHaveText(email);
}

/** Calls a server function directly, as the signed-in browser (form-encoded POST). */
export async function callServerFn(page: Page, name: string, form: Record<string, string>) {
  return page.request.post(`/rpc/${name}`, { form, headers: { Accept: "application/json" } });
}

/** Creates a user as the signed-in administrator and returns their email. */
export async function createUser(page: Page, role: "admin" | "viewer", password = "viewer-password-1"): Promise<string> {
  const email = `${role}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}@example.com`;
  const response = await callServerFn(page, "create_user", { email, password, role });
  expect(response.status(), await response.text()).toBe(200);
  return email;
}

/** Creates a factory as the signed-in administrator and returns its id. */
export async function createFactory(page: Page, name: string): Promise<string> {
  const response = await callServerFn(page, "create_factory", { name, location: "", timezone: "UTC" });
  expect(response.status(), await response.text()).toBe(200);
  return (await response.json()).id;
}

/** The page has no horizontal scroll bar. */
export async function expectNoHorizontalScroll(page: Page): Promise<void> {
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow, "page is wider than the viewport").toBeLessThanOrEqual(0);
}
