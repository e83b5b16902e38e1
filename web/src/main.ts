// The reference PWA: sign in, list, create and edit projects (through the offline outbox),
// resolve conflicts, and the public status page. Hash routes keep it a static site.

import type { OutboxEntry, Project, StatusPage } from "@chronicle/client";
import { askConflict, conflictOpen } from "./conflict.ts";
import { byId, h, replace } from "./dom.ts";
import { client, onSessionChange, refresh, signIn, signOut, token, who } from "./session.ts";
import { enqueue, onSync, queued, requestDrain, resolve, startSync } from "./sync.ts";
import "./style.css";

const main = byId("main");
/** Set while the user has typed into a form that a refresh would overwrite. */
let dirty = false;
let renderedRoute = "";

function projectAggregate(id: string): string {
  return `projects/${id}`;
}

/** Puts focus on the view's heading so keyboard and screen-reader users start there. */
function focusHeading(): void {
  main.querySelector<HTMLElement>("h1")?.focus();
}

function heading(text: string): HTMLHeadingElement {
  return h("h1", { tabindex: -1 }, text);
}

function fieldError(id: string): HTMLParagraphElement {
  return h("p", { id, class: "error", role: "alert" });
}

/** The server's fields with the user's queued, not yet applied, changes laid over them. */
function overlay(project: Pick<Project, "name" | "description">, entries: OutboxEntry[]): { name: string; description: string } {
  const shown = { name: project.name, description: project.description };
  for (const entry of entries) {
    const body = (entry.body ?? {}) as Partial<Project>;
    if (typeof body.name === "string") shown.name = body.name;
    if (typeof body.description === "string") shown.description = body.description;
  }
  return shown;
}

// --- sign in -----------------------------------------------------------------------------

function signInView(next: string): void {
  const error = fieldError("sign-in-error");
  const form = h(
    "form",
    { "aria-labelledby": "sign-in-title", novalidate: true },
    h("label", { for: "email" }, "Email"),
    h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    error,
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    void (async () => {
      const problem = await signIn(String(data.get("email") ?? ""), String(data.get("password") ?? ""));
      if (problem) {
        error.textContent = problem.status === 401 ? "Wrong email or password." : `Sign-in failed: ${problem.detail ?? problem.title}`;
        return;
      }
      location.hash = next === "#/signin" ? "#/projects" : next;
    })();
  });
  const title = heading("Sign in");
  title.id = "sign-in-title";
  replace(main, title, form);
}

// --- projects ----------------------------------------------------------------------------

async function projectsView(): Promise<void> {
  const [{ data, error }, entries] = await Promise.all([
    client.api.GET("/api/v1/projects", { params: { query: { sort: "-updated_at", page_size: 100 } } }),
    queued(),
  ]);
  const status = h("p", { id: "create-status", role: "status" });
  const nameError = fieldError("new-name-error");
  const form = h(
    "form",
    { "aria-labelledby": "new-project-title", novalidate: true },
    h("h2", { id: "new-project-title" }, "New project"),
    h("label", { for: "new-name" }, "Name"),
    h("input", { id: "new-name", name: "name", required: true, maxlength: 120, "aria-describedby": "new-name-error" }),
    nameError,
    h("label", { for: "new-description" }, "Description"),
    h("textarea", { id: "new-description", name: "description", rows: 3, maxlength: 2000 }),
    h("button", { type: "submit" }, "Create project"),
    status,
  );
  form.addEventListener("input", () => (dirty = true));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = new FormData(form);
    const name = String(values.get("name") ?? "").trim();
    const description = String(values.get("description") ?? "");
    if (name.length === 0) {
      nameError.textContent = "Enter a name.";
      byId("new-name").setAttribute("aria-invalid", "true");
      byId("new-name").focus();
      return;
    }
    void (async () => {
      const id = crypto.randomUUID();
      await enqueue({ method: "POST", path: "/api/v1/projects", aggregate: projectAggregate(id), body: { id, name, description }, label: `Create ${name}` });
      dirty = false;
      await projectsView();
      const fresh = byId("create-status");
      fresh.textContent = navigator.onLine ? `Project ${name} created.` : `Project ${name} will be created when you are back online.`;
      byId("new-name").focus();
    })();
  });

  const known = new Set((data?.items ?? []).map((project) => project.id));
  const rows = (data?.items ?? []).map((project) => {
    const mine = entries.filter((entry) => entry.aggregate === projectAggregate(project.id));
    const shown = overlay(project, mine);
    return h(
      "tr",
      { "data-id": project.id },
      h("td", {}, h("a", { href: `#/projects/${project.id}` }, shown.name)),
      h("td", {}, String(project.version)),
      h("td", {}, mine.length > 0 ? h("span", { class: "pending" }, "Waiting to sync") : project.archived ? "Archived" : "Saved"),
    );
  });
  // Creates still in the outbox: shown at once, linked once the server has them.
  for (const entry of entries) {
    const body = (entry.body ?? {}) as { id?: string; name?: string };
    if (entry.method !== "POST" || !body.id || known.has(body.id)) continue;
    rows.unshift(h("tr", { "data-id": body.id }, h("td", {}, body.name ?? ""), h("td", {}, "–"), h("td", {}, h("span", { class: "pending" }, "Waiting to sync"))));
  }
  replace(
    main,
    heading("Projects"),
    error ? h("p", { class: "error", role: "alert" }, "The projects could not be loaded.") : null,
    h(
      "table",
      { "aria-labelledby": "projects-caption" },
      h("caption", { id: "projects-caption", class: "visually-hidden" }, "Your projects"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, "State"))),
      h("tbody", {}, ...rows),
    ),
    form,
  );
}

async function projectView(id: string): Promise<void> {
  const [{ data: project, response }, entries] = await Promise.all([
    client.api.GET("/api/v1/projects/{id}", { params: { path: { id } } }),
    queued(),
  ]);
  const mine = entries.filter((entry) => entry.aggregate === projectAggregate(id));
  if (!project) {
    replace(
      main,
      heading(response.status === 404 ? "Project not found" : "Project unavailable"),
      h("p", {}, mine.length > 0 ? "It is waiting to be created: it appears here once the server has it." : "There is no such project."),
      h("p", {}, h("a", { href: "#/projects" }, "Back to projects")),
    );
    return;
  }
  const shown = overlay(project, mine);
  const status = h("p", { id: "save-status", role: "status" }, mine.length > 0 ? `${mine.length} change(s) waiting to sync.` : "");
  const nameError = fieldError("edit-name-error");
  const form = h(
    "form",
    { "aria-labelledby": "project-title", novalidate: true, "data-version": project.version },
    h("label", { for: "edit-name" }, "Name"),
    h("input", { id: "edit-name", name: "name", value: shown.name, required: true, maxlength: 120, "aria-describedby": "edit-name-error" }),
    nameError,
    h("label", { for: "edit-description" }, "Description"),
    h("textarea", { id: "edit-description", name: "description", rows: 4, maxlength: 2000 }, shown.description),
    h("button", { type: "submit" }, "Save"),
    status,
  );
  form.addEventListener("input", () => (dirty = true));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = new FormData(form);
    const name = String(values.get("name") ?? "").trim();
    const description = String(values.get("description") ?? "");
    if (name.length === 0) {
      nameError.textContent = "Enter a name.";
      byId("edit-name").setAttribute("aria-invalid", "true");
      byId("edit-name").focus();
      return;
    }
    nameError.textContent = "";
    byId("edit-name").removeAttribute("aria-invalid");
    // Only what changed against what the user sees, so a merge can keep the rest theirs.
    const body: Record<string, string> = {};
    if (name !== shown.name) body["name"] = name;
    if (description !== shown.description) body["description"] = description;
    if (Object.keys(body).length === 0) {
      status.textContent = "Nothing changed.";
      return;
    }
    shown.name = name;
    shown.description = description;
    dirty = false;
    void (async () => {
      // If-Match is the version the user saw; the outbox chains later edits onto earlier ones.
      await enqueue({ method: "PATCH", path: `/api/v1/projects/${id}`, aggregate: projectAggregate(id), ifMatch: project.version, body, label: `Edit ${name}` });
      const waiting = (await queued()).filter((entry) => entry.aggregate === projectAggregate(id)).length;
      status.textContent = waiting > 0 ? `Saved on this device; ${waiting} change(s) waiting to sync.` : "Saved.";
    })();
  });
  const title = heading(shown.name);
  title.id = "project-title";
  replace(
    main,
    h("p", {}, h("a", { href: "#/projects" }, "Back to projects")),
    title,
    h("p", { id: "project-version" }, `Version ${project.version} on the server${project.archived ? " (archived)" : ""}.`),
    form,
  );
}

// --- status ------------------------------------------------------------------------------

async function statusView(): Promise<void> {
  // Anonymous on purpose: a public read without Authorization may be cached by the browser.
  let page: StatusPage | undefined;
  try {
    const answer = await fetch("/api/v1/status", { headers: { accept: "application/json" } });
    if (answer.ok) page = (await answer.json()) as StatusPage;
  } catch {
    page = undefined;
  }
  if (!page) {
    replace(main, heading("Service status"), h("p", { role: "alert" }, "The status could not be loaded."));
    return;
  }
  replace(
    main,
    heading("Service status"),
    h("p", { id: "overall" }, "Overall: ", h("strong", { class: `status-${page.overall}` }, page.overall.replace(/_/g, " "))),
    page.services.length === 0
      ? h("p", {}, "No service has reported yet.")
      : h(
          "table",
          {},
          h("caption", {}, "Services"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Service"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Note"), h("th", { scope: "col" }, "Updated"))),
          h(
            "tbody",
            {},
            ...page.services.map((service) =>
              h(
                "tr",
                {},
                h("th", { scope: "row" }, service.service_id),
                h("td", { class: `status-${service.status}` }, service.status.replace(/_/g, " ")),
                h("td", {}, service.description ?? ""),
                h("td", {}, h("time", { datetime: service.updated_at }, new Date(service.updated_at).toLocaleString())),
              ),
            ),
          ),
        ),
  );
}

// --- the outbox's state in the page ------------------------------------------------------

async function showOutbox(): Promise<void> {
  const entries = await queued();
  const count = byId("outbox-count");
  count.dataset["count"] = String(entries.length);
  count.textContent = entries.length === 0 ? "No changes waiting" : `${entries.length} change(s) waiting to sync`;
  byId("network").textContent = navigator.onLine ? "Online" : "Offline";
  document.querySelector(".outbox")?.setAttribute("data-offline", String(!navigator.onLine));
  const problems = byId("outbox-problems");
  const first = entries[0];
  if (!first || first.state === "pending") {
    replace(problems);
    return;
  }
  if (first.state === "conflict" && first.problem?.status === 412) {
    replace(problems, h("p", {}, "A change conflicts with someone else's. ", h("button", { type: "button", id: "resolve-conflict", onclick: () => void openConflict(first) }, "Resolve conflict")));
    // Asked once by itself; after "decide later" only the button above opens it again.
    if (!deferred.has(first.id)) void openConflict(first);
    return;
  }
  replace(
    problems,
    h(
      "p",
      { role: "alert" },
      `“${first.label ?? first.method}” could not be saved: ${first.problem?.detail ?? first.problem?.title ?? "refused"}. `,
      h("button", { type: "button", onclick: () => void resolve(first.id, { action: "discard" }) }, "Discard this change"),
    ),
  );
}

/** Conflicts the user put off with "decide later". */
const deferred = new Set<string>();
/** Set from the moment a conflict is being shown (its data may still be loading). */
let conflictBusy = false;

async function openConflict(entry: OutboxEntry): Promise<void> {
  if (conflictBusy || conflictOpen() || !entry.problem) return;
  conflictBusy = true;
  try {
    await showConflict(entry, entry.problem);
  } finally {
    conflictBusy = false;
  }
}

async function showConflict(entry: OutboxEntry, problem: NonNullable<OutboxEntry["problem"]>): Promise<void> {
  const currentVersion = problem.current_version ?? 0;
  let theirs = problem.current;
  if (!theirs && entry.aggregate?.startsWith("projects/")) {
    // Older servers answer 412 without `current`: read it, waiting for the version the 412 named.
    const id = entry.aggregate.slice("projects/".length);
    for (let attempt = 0; attempt < 10 && !theirs; attempt++) {
      const { data } = await client.api.GET("/api/v1/projects/{id}", { params: { path: { id } } });
      if (data && data.version >= currentVersion) theirs = data;
      else await new Promise((wake) => setTimeout(wake, 300));
    }
  }
  const mine = (entry.body ?? {}) as Record<string, unknown>;
  if (theirs && Object.entries(mine).every(([field, value]) => theirs[field] === value)) {
    // The server already holds exactly this change (applied before its key expired): nothing to decide.
    await resolve(entry.id, { action: "discard", version: currentVersion });
    return;
  }
  const resolution = await askConflict({ entry, currentVersion, theirs: theirs ?? {} });
  if (resolution) await resolve(entry.id, resolution);
  else deferred.add(entry.id);
}

// --- routing -----------------------------------------------------------------------------

async function route(): Promise<void> {
  const hash = location.hash || "#/projects";
  const [, section, id] = hash.split("/");
  const changed = hash !== renderedRoute;
  renderedRoute = hash;
  dirty = false;
  if (section === "status") await statusView();
  else if (!token() && !(await refresh())) {
    if (section !== "signin") history.replaceState(null, "", `#/signin`);
    signInView(section === "signin" ? "#/projects" : hash);
  } else if (section === "projects" && id) await projectView(decodeURIComponent(id));
  else await projectsView();
  if (changed) focusHeading();
}

function showAccount(): void {
  byId("who").textContent = token() ? `Signed in${who() ? ` as ${who()}` : ""}` : "";
  byId("sign-out").hidden = !token();
}

byId("skip-link").addEventListener("click", (event) => {
  // The hash is the router's: move focus without changing it.
  event.preventDefault();
  main.focus();
});
byId("sign-out").addEventListener("click", () => {
  void signOut().then(() => (location.hash = "#/signin"));
});
onSessionChange(() => {
  showAccount();
  // Each account has its own queue: show it, and send what it holds.
  void showOutbox();
  if (token()) void requestDrain();
});
onSync((report) => {
  void showOutbox();
  // Fresh data after commands were applied, unless it would overwrite what the user is typing.
  if (report.applied > 0 && !dirty) void route();
});
window.addEventListener("hashchange", () => void route());
window.addEventListener("online", () => void showOutbox());
window.addEventListener("offline", () => void showOutbox());

void (async () => {
  await route();
  await startSync();
  await showOutbox();
})();
