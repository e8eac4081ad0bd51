import { expect, Page } from "@playwright/test";

/** Fails the test on any uncaught error in the page (a broken hydration shows up here). */
export function failOnPageErrors(page: Page): void {
  page.on("pageerror", (error) => {
    throw new Error(`page error: ${error.message}`);
  });
}

/** Waits until the wasm app has taken over the server-rendered HTML. */
export async function waitForHydration(page: Page): Promise<void> {
  await expect(page.locator("[data-hydrated=true]")).toHaveCount(1);
}

/** A name no other test run has used. */
export function unique(prefix: string): string {
  return `${prefix} ${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });
}
