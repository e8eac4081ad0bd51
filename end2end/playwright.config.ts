import { defineConfig, devices } from "@playwright/test";

// The server under test: the debug binary `make test` just built, on its own port,
// with a fresh DATA_DIR, so it starts the embedded PostgreSQL exactly as `make run`
// does on a new machine. BASE_URL skips the start and tests a running server.
const port = process.env.E2E_PORT ?? "3100";
const baseURL = process.env.BASE_URL ?? `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "./test-results",
  use: { baseURL, trace: "off" },
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          args: [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
          ],
        },
      },
    },
  ],
  webServer: process.env.BASE_URL
    ? undefined
    : {
        // Demo mode: the demo plant's gateways run on in-process simulators, so the
        // live pages have real connections to show and break.
        command: `(target/debug/factory-monitor db stop --data-dir target/e2e-data/db >/dev/null 2>&1 || true) && rm -rf target/e2e-data && exec ${process.env.SERVER_BIN ?? "target/debug/factory-monitor"} serve --demo`,
        cwd: "..",
        url: `${baseURL}/api/health`,
        timeout: 120_000,
        reuseExistingServer: false,
        // SIGTERM lets the server stop its embedded PostgreSQL (a kill would leave it running).
        gracefulShutdown: { signal: "SIGTERM", timeout: 10_000 },
        stdout: "pipe",
        stderr: "pipe",
        env: {
          DATA_DIR: "target/e2e-data",
          LISTEN_ADDR: `127.0.0.1:${port}`,
          DATABASE_URL: "",
          ENCRYPTION_KEY: "",
          RUST_LOG: "info,sqlx=warn",
          // The first-start administrator's password, known to the tests (helpers.ts).
          INITIAL_ADMIN_PASSWORD: process.env.E2E_ADMIN_PASSWORD ?? "e2e-admin-password",
        },
      },
});
