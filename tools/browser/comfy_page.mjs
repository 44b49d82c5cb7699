// Opens a ComfyUI server's real web frontend in Debian's headless Chromium (puppeteer-core drives
// the system browser; nothing is downloaded). Shared by the browser tests and the workflow builder.
import puppeteer from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Without the background-networking flags Chromium keeps trying to reach Google's hosts.
const FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"];

export async function launch() {
  return puppeteer.launch({ executablePath: CHROMIUM, args: FLAGS, defaultViewport: { width: 1920, height: 1080 },
    protocolTimeout: 900000 });
}

// A page with ComfyUI's app loaded, its node definitions registered and the first-run dialogs gone.
export async function openComfy(browser, url) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("console", (msg) => { if (msg.type() === "error") errors.push(msg.text()); });
  await page.goto(url, { waitUntil: "networkidle0", timeout: 120000 });
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph?.registered_node_types?.VAPApplyExpert,
    { timeout: 120000 });
  await closeDialogs(page);  // a new user's first visit opens the template browser
  return { page, errors };
}

export async function closeDialogs(page) {
  for (let i = 0; i < 5 && (await page.$(".p-dialog")); i++) {
    await page.keyboard.press("Escape");
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

// Queues the graph loaded in the page as the Run button does and waits for the run to end:
// {queue_status, queue_answer, events, error, outputs: [{node, output}]} (no events when refused).
export async function runFromUI(page) {
  await page.evaluate(() => {
    window.vapEvents = [];
    for (const kind of ["execution_start", "executed", "execution_success", "execution_error"]) {
      window.app.api.addEventListener(kind, (e) => window.vapEvents.push({ kind, detail: e.detail }));
    }
  });
  const queued = page.waitForResponse((r) => r.url().endsWith("/prompt") && r.request().method() === "POST");
  await page.evaluate(() => { window.app.queuePrompt(0, 1); });
  const answer = await queued;
  const run = { queue_status: answer.status(), queue_answer: await answer.json() };
  if (answer.ok()) {
    await page.waitForFunction(() => window.vapEvents.some((e) => ["execution_success", "execution_error"].includes(e.kind)),
      { timeout: 600000, polling: 500 });
    Object.assign(run, await page.evaluate(() => ({
      events: window.vapEvents.map((e) => e.kind),
      error: window.vapEvents.find((e) => e.kind === "execution_error")?.detail ?? null,
      outputs: window.vapEvents.filter((e) => e.kind === "executed").map((e) => ({ node: e.detail.node, output: e.detail.output })),
    })));
  }
  return run;
}
