// First-visit transfer of each page: wasm and JS bytes as sent on the wire (encoded
// size: after brotli or gzip), with an empty cache per page. Run by bench/wasm.sh.
import { createRequire } from "node:module";

// Playwright is installed in end2end/, where bench/wasm.sh runs this.
const { chromium } = createRequire(`${process.cwd()}/`)("@playwright/test");

const base = process.env.BASE_URL;
const password = process.env.ADMIN_PASSWORD;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
});

async function signedInState() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await page.getByLabel("Email").fill("admin@factory-monitor.local");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => url.pathname === "/");
  const state = await context.storageState();
  // One of each kind of detail page (the demo has gateways and machines at once, and
  // raises its first alarms within a minute).
  const first = (list) => page.evaluate(async (list) => {
    const answer = await fetch(`/api/${list}?limit=1`);
    return (await answer.json()).data[0]?.id;
  }, list);
  let machine;
  for (let tries = 0; !machine && tries < 120; tries += 1) {
    machine = await first("machines");
    if (!machine) await page.waitForTimeout(500);
  }
  const ids = { gateway: await first("gateways"), machine, alarm: await first("alarms") };
  await context.close();
  return { state, ids };
}

async function firstVisit(path, state) {
  // A new context is a new, empty cache.
  const context = await browser.newContext(state ? { storageState: state } : {});
  const page = await context.newPage();
  const responses = [];
  page.on("requestfinished", async (request) => {
    const url = new URL(request.url());
    if (/\.(wasm|js)$/.test(url.pathname)) {
      const sizes = await request.sizes();
      const response = await request.response();
      responses.push({
        path: url.pathname,
        wire: sizes.responseBodySize,
        encoding: (await response?.headerValue("content-encoding")) ?? "none",
      });
    }
  });
  await page.goto(`${base}${path}`);
  // The layout and the page's own (lazily loaded) code have both taken over.
  await page.locator("[data-hydrated=true][data-page-hydrated=true]").waitFor();
  await page.waitForLoadState("networkidle");
  await context.close();
  const sum = (kind) => responses.filter((r) => r.path.endsWith(kind)).reduce((n, r) => n + r.wire, 0);
  return { wasm: sum(".wasm"), js: sum(".js"), files: responses };
}

const { state, ids } = await signedInState();
const pages = [["/login", null], ["/", state], ["/factories", state], ["/gateways", state],
  [`/gateways/${ids.gateway}`, state], ["/machines", state], [`/machines/${ids.machine}`, state],
  ["/alarms", state], ...(ids.alarm ? [[`/alarms/${ids.alarm}`, state]] : []), ["/alarm-rules", state],
  ["/notification-channels", state], ["/users", state], ["/tokens", state], ["/account", state]];
// Issue 13's budget: at most 400 KB of wasm over the wire on the first visit of any page.
const BUDGET_KB = Number(process.env.WASM_BUDGET_KB ?? 400);
const over = [];
console.log("page                                          wasm KB   js KB   files (encoding)");
for (const [path, pageState] of pages) {
  const { wasm, js, files } = await firstVisit(path, pageState);
  if (wasm / 1000 > BUDGET_KB) over.push(path);
  const encodings = [...new Set(files.map((f) => f.encoding))].join(",");
  const shown = path.length > 44 ? `${path.slice(0, 41)}...` : path;
  console.log(`${shown.padEnd(44)} ${(wasm / 1000).toFixed(1).padStart(8)} ${(js / 1000).toFixed(1).padStart(7)}   ${files.length} (${encodings})`);
}
await browser.close();
if (over.length > 0) {
  console.error(`over the ${BUDGET_KB} KB wasm budget: ${over.join(", ")}`);
  process.exit(1);
}
console.log(`every page within the ${BUDGET_KB} KB wasm budget`);
