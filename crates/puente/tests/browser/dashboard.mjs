// Drives the dashboard of a running `puente demo` in headless Chromium:
// sign in, the seeded counts, filtering the records view, a failed record's
// category and hint, CSV export of the filtered rows, pause/resume, and a
// restore through its review screen. Screenshots go to the output folder.
//
// usage: node dashboard.mjs BASE_URL ADMIN_TOKEN OUT_DIR
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const [base, token, out] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
const shot = (name) => page.screenshot({ path: join(out, name), fullPage: true });
const step = (m) => console.log(`- ${m}`);
try {
  step("a stranger is sent to the login form; the token signs in");
  await page.goto(base + "/");
  assert.match(page.url(), /\/login\?next=/);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);

  step("the overview shows the seeded counts");
  const row = page.locator('tr[data-sync="crm-contacts"]');
  assert.equal((await row.locator('[data-count="in_sync"]').innerText()).trim(), "357");
  assert.equal((await row.locator('[data-count="failed"]').innerText()).trim(), "2");
  assert.equal((await row.locator('[data-count="deleted"]').innerText()).trim(), "1");
  const books = page.locator('tr[data-sync="customers"]');
  assert.equal((await books.locator('[data-count="in_sync"]').innerText()).trim(), "357");
  await shot("01-overview.png");

  step("filtering the records view by sync and status");
  await page.click("nav >> text=Records");
  await page.selectOption("select[name=sync]", "crm-contacts");
  await page.selectOption("select[name=status]", "failed");
  await Promise.all([page.waitForURL(/status=failed/), page.click("#filters button[type=submit]")]);
  const rows = page.locator("#records tbody tr");
  assert.equal(await rows.count(), 2);
  const text = await page.locator("#records").innerText();
  assert.match(text, /mapping/);
  assert.match(text, /validation/);
  assert.match(text, /add "vip" to the values/);
  await shot("02-records-failed.png");

  step("a failed record shows its category and hint");
  await Promise.all([page.waitForURL(/\/records\/crm-contacts\/\d+/), rows.first().locator("a").first().click()]);
  const detail = await page.locator("main").innerText();
  assert.match(detail, /failed/);
  assert.match(detail, /How to fix:/);
  await shot("03-record-detail.png");
  await page.goBack();

  step("CSV export downloads exactly the filtered rows");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert.equal(csv.length, 3, csv.join("\n"));
  assert.match(csv[0], /^sync,entry,a_id,b_id,status/);
  for (const line of csv.slice(1)) assert.match(line, /^crm-contacts,\d+,[^,]*,[^,]*,failed,/);
  await download.saveAs(join(out, "records-failed.csv"));

  step("pause and resume");
  await page.goto(base + "/syncs/crm-contacts");
  await Promise.all([page.waitForURL(/done=/), page.click("#pause")]);
  assert.equal(await page.locator("#state").innerText(), "paused");
  assert.ok(await page.locator("#resume").isVisible());
  await shot("04-paused.png");
  await Promise.all([page.waitForURL(/done=/), page.click("#resume")]);
  assert.notEqual(await page.locator("#state").innerText(), "paused");
  assert.ok(await page.locator("#pause").isVisible());

  step("restore goes through its review screen");
  await page.click("#restore-b");
  const review = page.locator("#review li");
  assert.equal(await review.count(), 1);
  await shot("05-restore-review.png");
  await page.click("#confirm-restore");
  await page.waitForSelector("#restored");
  assert.match(await page.locator("#restored").innerText(), /^1 record\(s\) recreated/);
  await shot("06-restored.png");

  step("the dry run view lists exact changes (none now)");
  await page.goto(base + "/syncs/crm-contacts/dry-run");
  assert.ok(await page.locator("#plan").isVisible());
  await shot("07-dry-run.png");
  console.log("dashboard checks passed");
} catch (e) {
  await shot("failure.png").catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
