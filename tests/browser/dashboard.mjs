// Drives the dashboard in Debian's headless Chromium: log in, check that the queue numbers on
// the page match the API's, retry a dead job from the page and watch it succeed, replay a
// webhook endpoint's failed delivery, screenshot.
//
// Env: KILN_URL (the API), KILN_ADMIN_KEY, KILN_DEAD_JOB (a dead job's id),
// KILN_WEBHOOK_ENDPOINT (an endpoint with one failed delivery), KILN_SCREENSHOT (where to save
// the PNG), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const base = process.env.KILN_URL;
const key = process.env.KILN_ADMIN_KEY;
const deadJob = process.env.KILN_DEAD_JOB;
const endpoint = process.env.KILN_WEBHOOK_ENDPOINT;
const screenshot = process.env.KILN_SCREENSHOT;
if (!base || !key || !deadJob || !endpoint || !screenshot) {
  throw new Error("KILN_URL, KILN_ADMIN_KEY, KILN_DEAD_JOB, KILN_WEBHOOK_ENDPOINT and KILN_SCREENSHOT are required");
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function eventually(what, probe, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last.ok) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: ${JSON.stringify(last)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } });
  const page = await context.newPage();
  const api = (path) =>
    page.request.get(base + path, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json());

  // Log in.
  await page.goto(base + "/admin");
  await page.fill('[data-testid="login-key"]', "kiln_wrong");
  await page.click('[data-testid="login-submit"]');
  const refused = await page.textContent('[data-testid="login-error"]');
  check(/Unknown or revoked/.test(refused), `a wrong key is refused, got ${refused}`);
  await page.fill('[data-testid="login-key"]', key);
  await page.click('[data-testid="login-submit"]');
  await page.waitForSelector('body[data-loaded="true"]');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "kiln_session");
  check(session && session.httpOnly && session.sameSite === "Strict", `cookie ${JSON.stringify(session)}`);

  // The page's queue numbers are the API's.
  await eventually("queue numbers match /v1/admin/queues", async () => {
    const fromApi = (await api("/v1/admin/queues")).queues;
    const fromPage = await page.$$eval("#queues tbody tr", (rows) =>
      rows.map((row) => ({
        queue: row.dataset.queue,
        dead: row.querySelector('[data-testid="queue-dead"]').textContent,
        consumers: row.querySelector('[data-testid="queue-consumers"]').textContent,
        ready: row.querySelector('[data-testid="queue-ready"]').textContent,
      })),
    );
    const mismatches = fromApi.filter((q) => {
      const shown = fromPage.find((p) => p.queue === q.queue);
      return !shown || shown.dead !== String(q.dead) || shown.consumers !== String(q.consumers ?? "–")
        || shown.ready !== String(q.ready ?? "–");
    });
    const emailDead = fromApi.find((q) => q.queue === "email")?.dead;
    return { ok: mismatches.length === 0 && fromPage.length === fromApi.length && emailDead === 1, mismatches, fromPage };
  });

  // The test's worker is listed, and each queue counts it as alive.
  await eventually("the live worker is listed and counted per queue", async () => {
    const fromApi = (await api("/v1/admin/queues")).queues;
    const workers = await page.$$eval("#workers tbody tr", (rows) =>
      rows.map((row) => row.querySelector('[data-testid="worker-queues"]').textContent));
    const counted = await page.$$eval("#queues tbody tr", (rows) =>
      rows.map((row) => row.querySelector('[data-testid="queue-workers"]').textContent));
    const ok = workers.length === 1 && workers[0].includes("media")
      && fromApi.every((q) => q.workers_alive === 1) && counted.every((n) => n === "1");
    return { ok, workers, counted };
  });

  // The usage panel shows the tenant that sent the (dead) email, with its chart.
  await eventually("the usage panel lists the email's tenant", async () => {
    const rows = await page.$$eval("#usage-tenants tbody tr", (rows) =>
      rows.map((row) => [...row.children].map((cell) => cell.textContent)));
    const chart = await page.$("#chart-usage canvas");
    const ok = rows.some((row) => Number(row[4]) >= 1) && chart !== null;
    return { ok, rows };
  });

  // A change without the CSRF token is refused, even with the session cookie.
  const forged = await page.evaluate(async (id) => {
    const r = await fetch(`/v1/admin/jobs/${id}/retry`, { method: "POST", credentials: "same-origin" });
    return { status: r.status, body: await r.json() };
  }, deadJob);
  check(forged.status === 403 && forged.body.error.code === "csrf_failed", `forged: ${JSON.stringify(forged)}`);

  // Retry the dead job from the page and watch it succeed.
  const row = `#dead tr[data-job-id="${deadJob}"]`;
  await page.waitForSelector(row);
  await page.click(`[data-testid="retry-${deadJob}"]`);
  await page.waitForSelector(row, { state: "detached" });
  await eventually("the retried job succeeds", async () => {
    const job = await api(`/v1/jobs/${deadJob}`);
    return { ok: job.status === "succeeded", job };
  });
  await eventually("the page shows the email queue idle with nothing dead", async () => {
    const row = '#queues tr[data-queue="email"]';
    const dead = await page.textContent(`${row} [data-testid="queue-dead"]`);
    const inFlight = await page.textContent(`${row} [data-testid="queue-in-flight"]`);
    const schedules = await page.$$eval("#schedules tbody tr", (rows) => rows.length);
    return { ok: dead === "0" && inFlight === "0" && schedules > 0, dead, inFlight, schedules };
  });
  // The webhook endpoint shows its failed delivery; replaying it from the page delivers it.
  const hook = `#webhooks tr[data-endpoint-id="${endpoint}"]`;
  await eventually("the endpoint shows its failed delivery", async () => {
    const success = await page.textContent(`${hook} [data-testid="webhook-success"]`);
    return { ok: success === "0% (0/1)", success };
  });
  await page.click(`[data-testid="replay-${endpoint}"]`);
  await eventually("the replayed delivery succeeds", async () => {
    const success = await page.textContent(`${hook} [data-testid="webhook-success"]`);
    return { ok: success === "100% (1/1)", success };
  });
  // The task queue panel shows the test's paused queue with its limits.
  await eventually("the paused task queue is listed", async () => {
    const row = '#task-queues tr[data-queue="tenant-a/reports"]';
    const state = await page.textContent(`${row} [data-testid="task-queue-state"]`).catch(() => null);
    const rate = await page.textContent(`${row} [data-testid="task-queue-rate"]`).catch(() => null);
    return { ok: state === "paused" && rate === "5/s (burst 10)", state, rate };
  });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`dashboard ok; screenshot at ${screenshot}`);
} finally {
  await browser.close();
}
