// End-to-end test of the reference PWA in headless Chromium (Debian's, driven by
// playwright-core) against a running Chronicle behind the PWA's same-origin proxy:
// sign in; offline, three edits are queued; online, the queue drains once; a concurrent edit
// by another client forces a 412 that the dialog resolves; the query API ends with the user's
// choice; the audit stream shows each command once; axe finds no serious or critical issue.
// scripts/e2e.sh starts everything this needs. Prints "N passed, N failed" last.

import { execFileSync } from "node:child_process";
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const APP = process.env.E2E_APP_URL ?? "http://localhost:5173";
// Node talks to the same proxy by address: "localhost" may resolve to ::1 first.
const API = process.env.E2E_API_URL ?? APP.replace("localhost", "127.0.0.1");
const PROXY_LOG = process.env.CHRONICLE_PROXY_LOG;
const DATABASE_URL = process.env.DATABASE_URL;
const EMAIL = process.env.E2E_EMAIL ?? "admin@chronicle.test";
const PASSWORD = process.env.E2E_PASSWORD ?? "chronicle-dev-admin";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const WAIT_MS = Number(process.env.E2E_WAIT_MS ?? 20_000);
// `0` against the dev server, which registers no service worker: the page replays the outbox.
const SERVICE_WORKER = process.env.E2E_SERVICE_WORKER !== "0";
const SENDER = SERVICE_WORKER ? "service-worker" : "page";

let passed = 0;
let failed = 0;

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    passed++;
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(error?.stack ?? error).split("\n").join("\n  ")}`);
    throw error;
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Polls `probe` until it answers something truthy, for at most WAIT_MS. */
async function eventually(what, probe) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((wake) => setTimeout(wake, 200));
  }
}

async function api(method, path, { token, body, headers = {} } = {}) {
  const init = { method, headers: { accept: "application/json", ...headers } };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${API}${path}`, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
}

async function login() {
  const answer = await api("POST", "/api/v1/auth/login", { body: { email: EMAIL, password: PASSWORD } });
  assert(answer.status === 200, `login answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** A token that may read the audit log: the admin grants themself `auditor` (ACCOUNTS.md). */
async function auditorToken() {
  const first = await login();
  if (first.roles.includes("auditor")) return first.access_token;
  const grant = await api("PUT", `/api/v1/admin/accounts/${first.account_id}/roles`, { token: first.access_token, body: { roles: ["admin", "auditor"] } });
  if (grant.status === 404 || grant.status === 405) {
    // This server has no role administration yet: grant it in the test's own database.
    assert(DATABASE_URL, "no role endpoint and no DATABASE_URL to grant auditor with");
    execFileSync("psql", [DATABASE_URL, "-qc", `UPDATE auth_credentials SET roles = ARRAY['admin','auditor'] WHERE account_id = '${first.account_id}'`]);
  } else {
    assert(grant.status === 200, `granting auditor answered ${grant.status}`);
  }
  const again = await login();
  assert(again.roles.includes("auditor"), `roles after the grant: ${again.roles}`);
  return again.access_token;
}

async function axeCheck(page, where) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert(bad.length === 0, `axe on ${where}: ${JSON.stringify(bad, null, 2)}`);
  for (const v of violations) console.log(`  axe on ${where}, ${v.impact}: ${v.id} (${v.help}) at ${v.nodes.join(", ")}`);
  return violations.length;
}

async function outboxCount(page) {
  return Number(await page.locator("#outbox-count").getAttribute("data-count"));
}

async function waitOutbox(page, count) {
  await eventually(`${count} change(s) in the outbox`, async () => (await outboxCount(page)) === count);
}

async function project(token, id) {
  const answer = await api("GET", `/api/v1/projects/${id}`, { token });
  return answer.status === 200 ? answer.body : undefined;
}

function proxiedCommands(id) {
  if (!PROXY_LOG || !existsSync(PROXY_LOG)) return undefined;
  return readFileSync(PROXY_LOG, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("PATCH ") && line.includes(`/api/v1/projects/${id} `))
    .map((line) => {
      const [method, path, key, status] = line.split(" ");
      return { method, path, key, status: Number(status) };
    });
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext();
const page = await context.newPage();
page.on("pageerror", (error) => console.log(`  page error: ${error.message}`));
// Who sent each project command: the service worker replays the outbox, the page never does.
const senders = [];
context.on("requestfailed", (request) => {
  if (process.env.E2E_DEBUG) console.log(`  failed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`);
});
context.on("request", (request) => {
  if (request.method() !== "GET" && request.url().includes("/api/v1/projects")) senders.push(request.serviceWorker() ? "service-worker" : "page");
  if (process.env.E2E_DEBUG && request.method() !== "GET") console.log(`  ${new Date().toISOString()} ${request.method()} ${request.url()} ${request.serviceWorker() ? "sw" : "page"}`);
});
const SCREENSHOTS = process.env.E2E_SCREENSHOTS;
async function snap(target, file) {
  if (SCREENSHOTS) await target.screenshot({ path: `${SCREENSHOTS}/${file}.png`, fullPage: true });
}
const name = `E2E ${new Date().toISOString()}`;
let id;
let other;
let auditor;
let offlineEdits = [];

try {
  await step("the admin of the test stack can read the audit log and edit as a second client", async () => {
    auditor = await auditorToken();
    other = (await login()).access_token;
  });

  await step("signing in with the keyboard lands on the projects page", async () => {
    await page.goto(`${APP}/#/projects`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await axeCheck(page, "sign-in");
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByLabel("Password").press("Enter");
    await page.getByRole("heading", { name: "Projects" }).waitFor();
    if (SERVICE_WORKER) assert(await page.evaluate(() => navigator.serviceWorker.ready.then((r) => Boolean(r.active))), "no active service worker");
    await axeCheck(page, "projects");
  });

  await step("a project created in the PWA reaches the server under its client-chosen id", async () => {
    await page.getByLabel("Name").fill(name);
    await page.getByLabel("Name").press("Enter");
    const row = page.locator("tr", { hasText: name });
    await eventually("the created project in the list at version 1", async () => (await row.count()) === 1 && (await row.locator("td").nth(1).textContent()) === "1");
    id = await row.getAttribute("data-id");
    assert(/^[0-9a-f-]{36}$/.test(id ?? ""), `row id ${id}`);
    const stored = await project(other, id);
    assert(stored?.name === name && stored.version === 1, `server has ${JSON.stringify(stored)}`);
    await row.getByRole("link", { name }).click();
    await page.locator("#project-version", { hasText: "Version 1 " }).waitFor();
    await axeCheck(page, "project edit");
  });

  await step("offline, three edits wait in the outbox and none reaches the server", async () => {
    await context.setOffline(true);
    await page.locator("#network", { hasText: "Offline" }).waitFor();
    for (const n of [1, 2, 3]) {
      await page.getByLabel("Name").fill(`Offline edit ${n}`);
      if (n === 3) await page.getByLabel("Description").fill("written offline");
      await page.getByLabel("Name").press("Enter");
      await waitOutbox(page, n);
      offlineEdits.push(`Offline edit ${n}`);
    }
    await snap(page, "offline-queue");
    const stored = await project(other, id);
    assert(stored.version === 1 && stored.name === name, `server moved while offline: ${JSON.stringify(stored)}`);
    const proxied = proxiedCommands(id);
    if (proxied) assert(proxied.length === 0, `PATCHes crossed the proxy while offline: ${JSON.stringify(proxied)}`);
  });

  await step("back online, the queue drains once, in order", async () => {
    await context.setOffline(false);
    await waitOutbox(page, 0);
    const stored = await eventually("version 4 in the query API", async () => {
      const p = await project(other, id);
      return p?.version === 4 ? p : undefined;
    });
    assert(stored.name === "Offline edit 3" && stored.description === "written offline", `server has ${JSON.stringify(stored)}`);
    const proxied = proxiedCommands(id);
    if (proxied) {
      assert(proxied.length === 3, `expected 3 PATCHes through the proxy, saw ${JSON.stringify(proxied)}`);
      assert(new Set(proxied.map((p) => p.key)).size === 3, "an idempotency key was sent twice");
      assert(proxied.every((p) => p.status === 200), `not all PATCHes answered 200: ${JSON.stringify(proxied)}`);
    }
    await page.locator("#project-version", { hasText: "Version 4 " }).waitFor();
    // Attempts that die on the way (the page may hear `online` before the worker's network
    // is back) are retried with backoff; only what reached the proxy counts as sent.
    assert(senders.length >= 4 && senders.every((s) => s === SENDER), `commands sent by ${JSON.stringify(senders)}, expected ${SENDER}`);
  });

  await step("a concurrent edit from another client makes the next save a 412 and opens the dialog", async () => {
    const theirs = await api("PATCH", `/api/v1/projects/${id}`, {
      token: other,
      headers: { "if-match": '"4"', "idempotency-key": `other-client-${id}` },
      body: { description: "their description" },
    });
    assert(theirs.status === 200 && theirs.body.version === 5, `their edit answered ${theirs.status}: ${JSON.stringify(theirs.body)}`);
    await page.getByLabel("Name").fill("Mine after the conflict");
    await page.getByLabel("Description").fill("my description");
    await page.getByLabel("Description").focus();
    await page.getByRole("button", { name: "Save" }).press("Enter");
    const dialog = page.getByRole("dialog", { name: "Someone else changed this project" });
    await dialog.waitFor();
    assert(await page.evaluate(() => document.getElementById("conflict-dialog").contains(document.activeElement)), "focus is not in the dialog");
    assert((await dialog.textContent()).includes("their description"), "the dialog does not show their value");
    await axeCheck(page, "conflict dialog");
    await snap(page, "conflict-dialog");
  });

  await step("merging with the keyboard (my name, their description) resolves it", async () => {
    await page.locator("#choice-description-mine").focus();
    await page.keyboard.press("ArrowRight");
    assert(await page.locator("#choice-description-theirs").isChecked(), "arrow key did not choose theirs");
    await page.getByRole("button", { name: "Merge fields" }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("dialog").waitFor({ state: "hidden" });
    assert(await page.evaluate(() => document.activeElement !== document.body), "focus was dropped on close");
    await waitOutbox(page, 0);
    const stored = await eventually("version 6 in the query API", async () => {
      const p = await project(other, id);
      return p?.version === 6 ? p : undefined;
    });
    assert(stored.name === "Mine after the conflict", `name ${stored.name}`);
    assert(stored.description === "their description", `description ${stored.description}`);
  });

  await step("the audit stream shows each command once", async () => {
    const stream = await api("GET", `/api/v1/audit/streams/Project/${id}`, { token: auditor });
    assert(stream.status === 200, `audit answered ${stream.status}: ${JSON.stringify(stream.body)}`);
    const events = stream.body.items;
    assert(events.map((e) => e.version).join(",") === "1,2,3,4,5,6", `versions ${events.map((e) => e.version)}`);
    assert(events.map((e) => e.event_type).join(",") === "ProjectCreated,ProjectUpdated,ProjectUpdated,ProjectUpdated,ProjectUpdated,ProjectUpdated", `types ${events.map((e) => e.event_type)}`);
    // Payloads are externally tagged: {"ProjectUpdated": {"name": ..., "description": ...}}.
    const names = events.map((e) => Object.values(e.payload)[0]?.name ?? null);
    assert(JSON.stringify(names) === JSON.stringify([name, ...offlineEdits, null, "Mine after the conflict"]), `names ${JSON.stringify(names)}`);
    const keys = events.map((e) => e.metadata.idempotency_key);
    assert(keys.every((k) => typeof k === "string" && k.length > 0), `a command without its key: ${JSON.stringify(keys)}`);
    assert(new Set(keys).size === keys.length, `a key appears twice: ${JSON.stringify(keys)}`);
    const proxied = proxiedCommands(id);
    if (proxied) {
      for (const p of proxied.filter((p) => p.status === 200)) {
        assert(keys.filter((k) => k === p.key).length === 1, `key ${p.key} is not in the log exactly once`);
      }
    }
  });

  await step("the public status page renders without an account and passes axe", async () => {
    const report = await api("POST", "/api/v1/status/services/e2e-api/reports", {
      token: other,
      headers: { "idempotency-key": `status-${id}` },
      body: { status: "degraded_performance", description: "checked by the e2e test" },
    });
    assert(report.status === 201, `status report answered ${report.status}: ${JSON.stringify(report.body)}`);
    await api("GET", "/api/v1/status", { headers: { "x-consistency-token": report.body.consistency_token } });
    const anonymous = await browser.newContext();
    const visitor = await anonymous.newPage();
    await visitor.goto(`${APP}/#/status`);
    await visitor.getByRole("heading", { name: "Service status" }).waitFor();
    await visitor.locator("#overall", { hasText: "degraded performance" }).waitFor();
    await visitor.getByRole("row", { name: /e2e-api degraded performance/ }).waitFor();
    await axeCheck(visitor, "status");
    await snap(visitor, "status");
    await anonymous.close();
  });
} catch {
  // The failing step has reported; later steps depend on it.
} finally {
  await browser.close();
  console.log(`e2e: ${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
}
