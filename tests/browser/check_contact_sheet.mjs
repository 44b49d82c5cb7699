// Opens a batch run's contact sheet (OUT/index.html) from file:// in headless Chromium, with every
// request that is not file:// blocked and recorded, and prints one JSON object; the pytest side
// (tests/test_contact_sheet.py) asserts on it.
//
//   node tests/browser/check_contact_sheet.mjs OUT/index.html SCREENSHOT.png|- [--load-only]
//
// --load-only: just the load time and the row count (for a large generated sheet).
import path from "path";
import { pathToFileURL } from "url";
import { launch } from "../../tools/browser/comfy_page.mjs";

const [indexPath, screenshot, mode] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const result = { blocked: [], dialogs: [], page_errors: [], console_errors: [] };

const browser = await launch();
try {
  const page = await browser.newPage();
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    if (request.url().startsWith("file:")) return request.continue();
    result.blocked.push(request.url());
    return request.abort();
  });
  page.on("dialog", async (dialog) => {
    result.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on("pageerror", (err) => result.page_errors.push(String(err)));
  page.on("console", (msg) => { if (msg.type() === "error") result.console_errors.push(msg.text()); });

  const url = pathToFileURL(path.resolve(indexPath)).href;
  const started = Date.now();
  await page.goto(url, { waitUntil: "load", timeout: 120000 });
  result.wall_load_ms = Date.now() - started;
  Object.assign(result, await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return { load_ms: nav.loadEventStart, dom_content_loaded_ms: nav.domContentLoadedEventEnd,
      rows: [...document.querySelectorAll("#rows tr.job")].map((tr) => ({ name: tr.dataset.name, status: tr.classList[1] })) };
  }));

  if (mode !== "--load-only") {
    // every result video: data for the current frame, a duration, and it plays (currentTime moves on)
    await page.waitForFunction(() => [...document.querySelectorAll("td.result video")].every((v) => v.readyState >= 2),
      { timeout: 30000 }).catch(() => {});
    // frames painted and the position, now and a little later (a looping video's position may wrap)
    const sample = () => page.evaluate(() => [...document.querySelectorAll("td.result video")]
      .map((v) => [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames]));
    const before = await sample();
    await sleep(700);
    result.videos = await page.evaluate((before) => [...document.querySelectorAll("td.result video")].map((v, i) => ({
      row: v.closest("tr").dataset.name, src: v.getAttribute("src"), poster: v.getAttribute("poster"),
      readyState: v.readyState, duration: v.duration, paused: v.paused, muted: v.muted, loop: v.loop,
      before: before[i][0], after: v.currentTime, frames_before: before[i][1],
      frames_after: v.getVideoPlaybackQuality().totalVideoFrames, error: v.error && v.error.code,
    })), before);
    // the failed rows: their message, shown, in red
    result.failed = await page.evaluate(() => [...document.querySelectorAll("tr.job.failed")].map((tr) => {
      const error = tr.querySelector("td.result .error");
      return { name: tr.dataset.name, message: error ? error.textContent : null,
        visible: !!error && error.getBoundingClientRect().height > 0, color: error && getComputedStyle(error).color };
    }));
    result.captions = await page.evaluate(() => [...document.querySelectorAll("td.caption")].map((td) => td.textContent));
    result.scripts = await page.evaluate(() => document.scripts.length);
    await page.click("#failed-only");
    result.failed_only_visible = await page.evaluate(() => [...document.querySelectorAll("#rows tr.job")]
      .filter((tr) => tr.getBoundingClientRect().height > 0).map((tr) => tr.dataset.name));
    await page.click("#failed-only");
    await page.select("#sort", "name");
    result.sorted_by_name = await page.evaluate(() => [...document.querySelectorAll("#rows tr.job")].map((tr) => tr.dataset.name));
    await page.select("#sort", "time");
    result.sorted_by_time = await page.evaluate(() => [...document.querySelectorAll("#rows tr.job")]
      .map((tr) => [tr.dataset.name, Number(tr.dataset.seconds)]));
    await page.select("#sort", "row");
  }
  if (screenshot && screenshot !== "-") await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
