// The status page in headless Chromium (run by tests/status_page.rs, which starts flywheel and
// sends simulated traffic first). Opens STATUS_URL, enters STATUS_KEY in the key dialog, waits
// for the SLO table, the models table and the charts to show real values, checks them against
// EXPECT_SLOS / EXPECT_MODELS / EXPECT_ALERT, and saves light and dark screenshots in ARTIFACTS (named by SHOTS).
// Every wait is for a condition, with a generous timeout; exits non-zero on the first failure.
import { chromium } from "playwright-core";
import path from "node:path";
import fs from "node:fs";
import os from "node:os";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("STATUS_URL");
const key = env("STATUS_KEY");
const project = env("STATUS_PROJECT");
const models = JSON.parse(env("EXPECT_MODELS"));
// EXPECT_DETECTOR_DOWN=1: an api without a detector; the SLO panel must say so, the rest
// still shows the data (one light pass, screenshot status-page-no-detector.png).
const detectorDown = process.env.EXPECT_DETECTOR_DOWN === "1";
const slos = detectorDown ? [] : JSON.parse(env("EXPECT_SLOS"));
const alertSlo = detectorDown ? "" : env("EXPECT_ALERT");
const artifacts = env("ARTIFACTS");
// Screenshot names: `${shots}.png` and `${shots}-dark.png` (one pair per stack tested).
const shots = process.env.SHOTS || "status-page";
const WAIT = 120_000;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// An empty profile per run (playwright takes it as the persistent context's user-data-dir).
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "flywheel-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1600, height: 1000 },
  deviceScaleFactor: 1,
  colorScheme: "light",
});

let failed = false;
try {
  for (const scheme of detectorDown ? ["light"] : ["light", "dark"]) {
    const page = await context.newPage();
    await page.emulateMedia({ colorScheme: scheme });
    const foreign = [];
    const errors = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(new URL(url).origin)) foreign.push(r.url());
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    // The 401s before the key is entered are expected; any other console error is not.
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 401/.test(m.text())) errors.push(m.text());
    });

    await page.goto(url, { waitUntil: "domcontentloaded", timeout: WAIT });
    // auth.required: the page asks once for a key and keeps it (the second pass has it).
    if (scheme === "light") {
      await page.locator("#key-dialog[open]").waitFor({ timeout: WAIT });
      await page.fill("#key-input", key);
      await page.click("#key-save");
    }
    await page.waitForFunction(() => document.body.dataset.loaded === "true", null, { timeout: WAIT });
    check((await page.textContent("#project")) === project, "project shown");
    check(await page.evaluate(() => localStorage.getItem("flywheel.apiKey")) === key, "key stored");

    // 15 minutes: the traffic spans about a minute.
    await page.click('#range button[data-minutes="15"]');
    await page.waitForFunction(() => /15 min/.test(document.querySelector('[data-kpi="Calls"] .hint').textContent),
      null, { timeout: WAIT });

    if (detectorDown) {
      await page.locator("#detector-down").waitFor({ timeout: WAIT });
      check(/detector is not running/.test(await page.textContent("#detector-down")), "says the detector is not running");
      check(/detector not running/.test(await page.textContent("#detector-badge")), "badge");
      await page.waitForFunction((names) => {
        const rows = [...document.querySelectorAll("#models tr[data-model]")];
        return names.every((n) => rows.some((r) => r.dataset.model === n));
      }, models, { timeout: WAIT });
      check(errors.length === 0, `page errors: ${errors.join("; ")}`);
      const shot = path.join(artifacts, "status-page-no-detector.png");
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`no detector: models shown -> ${shot}`);
      await page.close();
      continue;
    }

    // SLO table: every SLO of the file, with an SLI and a budget bar.
    await page.waitForFunction((names) => {
      const rows = [...document.querySelectorAll("#slos tr[data-slo]")];
      return names.every((n) => rows.some((r) => r.dataset.slo === n));
    }, slos, { timeout: WAIT });
    const sloRows = await page.$$eval("#slos tr[data-slo]", (rows) => rows.map((r) => ({
      slo: r.dataset.slo,
      cells: [...r.cells].map((c) => c.textContent.trim()),
      bar: r.querySelector(".bar > i") !== null,
    })));
    for (const r of sloRows) {
      check(/\d+(\.\d+)?%/.test(r.cells[2]), `SLI of ${r.slo}: ${r.cells[2]}`);
      check(/×/.test(r.cells[4]), `burn rates of ${r.slo}: ${r.cells[4]}`);
      check(r.bar, `budget bar of ${r.slo}`);
    }
    check(!(await page.isVisible("#detector-down")), "detector shown as running");

    // Models: each model the simulator sent, with calls and a non-zero cost.
    await page.waitForFunction((names) => {
      const rows = [...document.querySelectorAll("#models tr[data-model]")];
      return names.every((n) => rows.some((r) => r.dataset.model === n &&
        Number(r.querySelector("[data-cost]").dataset.cost) > 0));
    }, models, { timeout: WAIT });
    const modelRows = await page.$$eval("#models tr[data-model]", (rows) => rows.map((r) => ({
      model: r.dataset.model,
      cost: Number(r.querySelector("[data-cost]").dataset.cost),
      cells: [...r.cells].map((c) => c.textContent.trim()),
    })));
    for (const m of modelRows) {
      check(m.cost > 0, `cost of ${m.model}`);
      check(/\d/.test(m.cells[1]) && m.cells[1] !== "0", `calls of ${m.model}: ${m.cells[1]}`);
      check(/ms|s$/.test(m.cells[6]), `p95 TTFT of ${m.model}: ${m.cells[6]}`);
      check(/ms|s$/.test(m.cells[9]), `p95 TPOT of ${m.model}: ${m.cells[9]}`);
    }
    // Sorting by p95 TTFT reorders by that column.
    await page.click('#models th[data-col="ttft_p95"]');
    check(await page.isVisible('#models th[data-col="ttft_p95"].sorted'), "sorted by p95 TTFT");

    // Charts: drawn, with points from the data.
    await page.waitForFunction(() => ["chart-calls", "chart-ttft", "chart-cost", "chart-negative"]
      .every((id) => {
        const el = document.getElementById(id);
        return el.querySelector("canvas") && Number(el.dataset.points) > 0;
      }), null, { timeout: WAIT });

    // The alert the burst raised, and negative feedback tied to conversations.
    await page.waitForFunction((slo) =>
      [...document.querySelectorAll("#alerts tr[data-alert]")].some((r) => r.dataset.alert === slo),
    alertSlo, { timeout: WAIT });
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#feedback li")].some((li) => li.querySelector(".conv") && li.querySelector(".model")),
    null, { timeout: WAIT });
    const kpis = await page.$$eval(".kpi", (ks) => Object.fromEntries(ks.map((k) => [k.dataset.kpi, k.querySelector(".value").textContent])));
    check(kpis.Calls && kpis.Calls !== "–" && kpis.Calls !== "0", `calls KPI ${kpis.Calls}`);
    check(/^\$/.test(kpis.Cost) && kpis.Cost !== "$0", `cost KPI ${kpis.Cost}`);

    check(foreign.length === 0, `requests left the server: ${foreign.join(", ")}`);
    check(errors.length === 0, `page errors: ${errors.join("; ")}`);

    // Let the charts settle at their final width, then keep the picture.
    await page.waitForTimeout(300);
    const shot = path.join(artifacts, scheme === "light" ? `${shots}.png` : `${shots}-dark.png`);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`${scheme}: ${sloRows.length} SLO rows, ${modelRows.length} models, KPIs ${JSON.stringify(kpis)} -> ${shot}`);
    await page.close();
  }
  console.log("status page ok");
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
