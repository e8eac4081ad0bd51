import { expect, test } from "@playwright/test";
import { ADMIN, callServerFn, createUser, failOnPageErrors, signIn, waitForHydration } from "./helpers";

test.describe("sign-in", () => {
  test("a signed-out visitor is sent to the sign-in page and back where they were going", async ({ page }) => {
    failOnPageErrors(page);
    await page.goto("/gateways?page=1");
    await expect(page).toHaveURL(/\/login\?next=%2Fgateways%3Fpage%3D1$/);
    await waitForHydration(page);
    await page.getByLabel("Email").fill(ADMIN.email);
    await page.getByLabel("Password").fill(ADMIN.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/gateways\?page=1$/);
    await expect(page.getByRole("heading", { name: "Gateways", exact: true })).toBeVisible();
    await expect(page.locator(".account-email")).toHaveText(ADMIN.email);
  });

  test("a wrong password and an unknown email get the same message", async ({ page }) => {
    failOnPageErrors(page);
    await page.goto("/login");
    await waitForHydration(page);
    await page.getByLabel("Email").fill(ADMIN.email);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").filter({ hasText: "Incorrect email or password." })).toBeVisible();
    await page.getByLabel("Email").fill("nobody@example.com");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").filter({ hasText: "Incorrect email or password." })).toBeVisible();
    await expect(page).toHaveURL(/\/login/);
  });

  test("repeated failures lock the account for a while, even with the right password", async ({ page }) => {
    await signIn(page);
    const email = await createUser(page, "viewer", "the-right-password");
    await page.context().clearCookies();
    await page.goto("/login");
    await waitForHydration(page);
    await page.getByLabel("Email").fill(email);
    for (let i = 0; i < 5; i++) {
      await page.getByLabel("Password").fill(`wrong-${i}`);
      await page.getByRole("button", { name: "Sign in" }).click();
      await expect(page.getByRole("button", { name: "Sign in" })).toBeEnabled();
    }
    await page.getByLabel("Password").fill("the-right-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").filter({ hasText: "Too many failed sign-in attempts" })).toBeVisible();
    await expect(page).toHaveURL(/\/login/);
  });

  test("signing out ends the session", async ({ page }) => {
    failOnPageErrors(page);
    await signIn(page);
    await waitForHydration(page);
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(page).toHaveURL(/\/login/);
    await page.goto("/factories");
    await expect(page).toHaveURL(/\/login\?next=%2Ffactories/);
    const response = await page.request.get("/api/factories");
    expect(response.status()).toBe(401);
  });
});

test.describe("sign-in without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("works, and a failure says why", async ({ page }) => {
    await page.goto("/login?next=%2Ffactories");
    await page.getByLabel("Email").fill(ADMIN.email);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByText("Incorrect email or password.")).toBeVisible();
    // The email is kept; the password is not, and is not in the URL.
    await expect(page.getByLabel("Email")).toHaveValue(ADMIN.email);
    await expect(page.getByLabel("Password")).toHaveValue("");
    expect(page.url()).not.toContain("not%20the%20password");
    await page.getByLabel("Password").fill(ADMIN.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/factories$/);
    await expect(page.getByRole("heading", { name: "Factories", exact: true })).toBeVisible();
  });
});

test.describe("roles", () => {
  test("a viewer sees no admin pages or controls, and the server refuses their writes", async ({ page }) => {
    failOnPageErrors(page);
    await signIn(page);
    const email = await createUser(page, "viewer", "viewer-password-1");
    await page.context().clearCookies();
    await signIn(page, email, "viewer-password-1", "/factories");
    await waitForHydration(page);

    const nav = page.getByRole("navigation", { name: "Main" });
    await expect(nav.getByRole("link", { name: "Factories" })).toBeVisible();
    await expect(nav.getByRole("link", { name: "Users" })).toHaveCount(0);
    await expect(nav.getByRole("link", { name: "API tokens" })).toHaveCount(0);
    await expect(page.getByRole("form", { name: "Add factory" })).toHaveCount(0);
    await expect(page.getByRole("link", { name: "Edit" })).toHaveCount(0);

    for (const path of ["/users", "/tokens"]) {
      const response = await page.goto(path);
      expect(response?.status(), path).toBe(403);
      await expect(page.getByText("Only administrators can do this")).toBeVisible();
    }

    // A direct POST to the server function, bypassing the page.
    const create = await callServerFn(page, "create_factory", { name: "Viewer was here", location: "", timezone: "UTC" });
    expect(create.status()).toBe(403);
    expect((await create.json()).code).toBe("FORBIDDEN");
    const promote = await callServerFn(page, "create_user", { email: "evil@example.com", password: "password-123", role: "admin" });
    expect(promote.status()).toBe(403);
    const api = await page.request.post("/api/factories", { data: { name: "Viewer via API" } });
    expect(api.status()).toBe(403);
    // Reading is fine.
    expect((await page.request.get("/api/factories")).status()).toBe(200);
  });

  test("an administrator manages users: create, role, disable, reset password", async ({ page }) => {
    failOnPageErrors(page);
    await signIn(page, ADMIN.email, ADMIN.password, "/users");
    await waitForHydration(page);
    const email = `new-${Date.now().toString(36)}@example.com`;
    const form = page.getByRole("form", { name: "Add user" });
    await form.getByLabel("Email").fill(email);
    await form.getByLabel("Password").fill("short");
    await form.getByRole("button", { name: "Add user" }).click();
    await expect(form.getByText("Password must be at least 8 characters")).toBeVisible();
    await form.getByLabel("Password").fill("a-good-password");
    await form.getByRole("button", { name: "Add user" }).click();
    await expect(page.getByRole("status")).toContainText(`User ${email} created.`);
    const row = page.getByRole("row", { name: new RegExp(email) });
    await expect(row).toContainText("viewer");
    await row.getByRole("button", { name: "Make admin" }).click();
    await expect(row.getByRole("button", { name: "Make viewer" })).toBeVisible();
    await row.getByRole("button", { name: "Disable" }).click();
    await expect(row).toContainText("Disabled");
    await row.getByText("Reset password").click();
    await row.getByLabel("New password").fill("another-password");
    await row.getByRole("button", { name: "Set password" }).click();
    await expect(page.getByRole("status")).toContainText("has a new password");
  });

  test("an administrator creates an API token, sees it once, and revokes it", async ({ page }) => {
    failOnPageErrors(page);
    await signIn(page, ADMIN.email, ADMIN.password, "/tokens");
    await waitForHydration(page);
    const name = `script ${Date.now().toString(36)}`;
    await page.getByLabel("Token name").fill(name);
    await page.getByRole("button", { name: "Create token" }).click();
    const secret = await page.locator(".token-secret").textContent();
    expect(secret).toMatch(/^fm_/);
    const withToken = await page.request.get("/api/factories", { headers: { Authorization: `Bearer ${secret}` } });
    expect(withToken.status()).toBe(200);
    await page.reload();
    await expect(page.locator(".token-secret")).toHaveCount(0);
    const row = page.getByRole("row", { name: new RegExp(name) });
    await row.getByText("Revoke", { exact: true }).click();
    await row.getByRole("button", { name: "Revoke token" }).click();
    await expect(row).toContainText("Revoked");
  });
});

test.describe("own account", () => {
  test("a user changes their own password; a common one is refused", async ({ page }) => {
    failOnPageErrors(page);
    await signIn(page);
    const email = await createUser(page, "viewer", "first-password-1");
    await page.context().clearCookies();
    await signIn(page, email, "first-password-1", "/factories");
    await waitForHydration(page);
    await page.locator(".account-email").click();
    await page.waitForURL("**/account");
    const form = page.getByRole("form", { name: "Change password" });
    await form.getByLabel("Current password").fill("first-password-1");
    await form.getByLabel("New password").fill("password1");
    await form.getByRole("button", { name: "Change password" }).click();
    await expect(form.getByText("one of the most common passwords")).toBeVisible();
    await form.getByLabel("New password").fill("second-password-2");
    await form.getByRole("button", { name: "Change password" }).click();
    await expect(page.getByRole("status")).toContainText("Password changed");
    await page.context().clearCookies();
    await signIn(page, email, "second-password-2", "/factories");
  });

  test("a crafted link neither shows its text nor fills a form in", async ({ page }) => {
    failOnPageErrors(page);
    await signIn(page);
    await page.goto("/factories?error=Your%20account%20is%20locked%3A%20call%20555&form.nonce=guess&form.name=Evil%20plant");
    await waitForHydration(page);
    await expect(page.getByText("Your account is locked")).toHaveCount(0);
    await expect(page.getByRole("form", { name: "Add factory" }).getByLabel("Factory name")).toHaveValue("");
  });
});
