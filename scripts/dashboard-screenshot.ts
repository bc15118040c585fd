// Makes docs/dashboard.png, the README's picture of the dashboard: opens a running cluster's /ui/ in
// headless chromium (playwright-core), puts a few keys and runs a light load so that the request table
// has figures, opens a key, and saves the top of the page.
//
//   npm start                           # in one terminal (or any raftkv local)
//   npx tsx scripts/dashboard-screenshot.ts http://127.0.0.1:60100/ui/ 127.0.0.1:60000,127.0.0.1:60001,127.0.0.1:60002

import { statSync } from "node:fs";
import { chromium } from "playwright-core";
import { RaftKvClient } from "../src/client/index.ts";

const [url, endpoints, out = "docs/dashboard.png"] = process.argv.slice(2);
if (url === undefined || endpoints === undefined) {
  console.error("usage: tsx scripts/dashboard-screenshot.ts DASHBOARD_URL ENDPOINTS [OUT.png]");
  process.exit(2);
}
const client = new RaftKvClient({ endpoints: endpoints.split(","), timeoutMs: 2000 });
const browser = await chromium.launch({
  executablePath: process.env["RAFTKV_CHROMIUM"] ?? "/usr/bin/chromium",
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 1000 } });
  await page.goto(url);
  const enc = new TextEncoder();
  await client.put("config/app", enc.encode(JSON.stringify({ replicas: 3, lease: "on", tags: ["a", "b"] })));
  for (let i = 0; i < 5; i++) await client.put(`users/${i}`, enc.encode(`user number ${i}`));
  const until = performance.now() + 6000;
  while (performance.now() < until) {
    await client.put(`load/${Math.floor(Math.random() * 10)}`, enc.encode("x".repeat(64)));
    await client.get("config/app");
  }
  await page.fill("#prefix", "");
  await page.click("#search button[type=submit]");
  await page.click('tr[data-key="config/app"]');
  await page.check('input[name="mode"][value="json"]');
  await page.waitForTimeout(1200);
  await page.evaluate("window.scrollTo(0, 0)");
  await page.screenshot({
    path: out,
    clip: { x: 0, y: 0, width: 1000, height: Number(process.env["SHOT_HEIGHT"] ?? 660) },
  });
  console.log(`${out}: ${statSync(out).size} bytes`);
} finally {
  await browser.close();
  client.close();
}
