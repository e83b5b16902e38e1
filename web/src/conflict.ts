// The 412 dialog: the user's queued change against what the server holds now, field by field:
// keep mine, keep theirs, or merge (choose per field). Modal, labelled, keyboard-only usable;
// focus moves into it on open and back to where it was on close.

import type { OutboxEntry, Resolution } from "@chronicle/client";
import { byId, h, replace } from "./dom.ts";

/** The fields a project edit can carry, with their labels. */
const FIELDS: Record<string, string> = { name: "Name", description: "Description" };

/** What the dialog needs to show one conflict. */
export interface ConflictView {
  entry: OutboxEntry;
  /** The version the server is at (the 412's `current_version`). */
  currentVersion: number;
  /** The resource as the server holds it (the 412's `current`, or a fresh read). */
  theirs: Record<string, unknown>;
}

function text(value: unknown): string {
  if (value === undefined || value === null || value === "") return "(empty)";
  return String(value);
}

/** True while the dialog is showing. */
export function conflictOpen(): boolean {
  return byId<HTMLDialogElement>("conflict-dialog").open;
}

/**
 * Shows the dialog and answers the user's decision, or `undefined` for "decide later"
 * (Escape or the button): the change then stays parked in the outbox.
 */
export function askConflict(view: ConflictView): Promise<Resolution | undefined> {
  const dialog = byId<HTMLDialogElement>("conflict-dialog");
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const mine = (view.entry.body ?? {}) as Record<string, unknown>;
  const fields = Object.keys(mine).filter((field) => field in FIELDS);

  return new Promise((settle) => {
    const finish = (resolution: Resolution | undefined): void => {
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      replace(dialog);
      // The dialog's content is gone: put focus back where the user was, or on the page's heading.
      const fallback = document.querySelector<HTMLElement>("main h1");
      (opener?.isConnected ? opener : fallback)?.focus();
      settle(resolution);
    };
    const onClose = (): void => finish(undefined);

    const keep = (): Resolution => ({ action: "resend", body: mine, ifMatch: view.currentVersion });
    const theirs = (): Resolution => ({ action: "discard", version: view.currentVersion });
    const merge = (): Resolution => {
      const body: Record<string, unknown> = {};
      for (const field of fields) {
        const choice = dialog.querySelector<HTMLInputElement>(`input[name="choice-${field}"]:checked`);
        if (choice?.value !== "theirs") body[field] = mine[field];
      }
      return Object.keys(body).length === 0 ? theirs() : { action: "resend", body, ifMatch: view.currentVersion };
    };

    const title = h("h2", { id: "conflict-title", tabindex: -1 }, "Someone else changed this project");
    replace(
      dialog,
      h(
        "form",
        { method: "dialog", onsubmit: (event: Event) => event.preventDefault() },
        title,
        h(
          "p",
          { id: "conflict-help" },
          `Your change was not saved: the project is now at version ${view.currentVersion}. `,
          "Keep your values, keep theirs, or choose field by field and merge.",
        ),
        ...fields.map((field) =>
          h(
            "fieldset",
            {},
            h("legend", {}, `${FIELDS[field]}: keep which value?`),
            h("dl", { class: "choices" }, h("dt", {}, "Yours"), h("dd", {}, text(mine[field])), h("dt", {}, "Theirs"), h("dd", {}, text(view.theirs[field]))),
            h("input", { type: "radio", id: `choice-${field}-mine`, name: `choice-${field}`, value: "mine", checked: true }),
            h("label", { for: `choice-${field}-mine` }, `Yours (${FIELDS[field]})`),
            h("input", { type: "radio", id: `choice-${field}-theirs`, name: `choice-${field}`, value: "theirs" }),
            h("label", { for: `choice-${field}-theirs` }, `Theirs (${FIELDS[field]})`),
          ),
        ),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", onclick: () => finish(keep()) }, "Keep mine"),
          h("button", { type: "button", onclick: () => finish(theirs()) }, "Keep theirs"),
          h("button", { type: "button", onclick: () => finish(merge()) }, "Merge fields"),
          h("button", { type: "button", class: "secondary", onclick: () => finish(undefined) }, "Decide later"),
        ),
      ),
    );
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    title.focus();
  });
}
