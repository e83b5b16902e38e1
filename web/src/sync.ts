// The page's side of the outbox: queue commands, ask the service worker to replay them (or
// replay in the page where there is no service worker), and tell the views what happened.

import { Outbox, type Command, type OutboxEntry, type Resolution } from "@chronicle/client";
import { CHANNEL, queueName, report, type DrainReport, type DrainRequest } from "./messages.ts";
import { account, client, refresh, token } from "./session.ts";

const outboxes = new Map<string, Promise<Outbox>>();
let worker: ServiceWorker | undefined;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
const listeners = new Set<(report: DrainReport) => void>();

/** The signed-in account's outbox, opened once per page; none while signed out. */
export function outbox(): Promise<Outbox> | undefined {
  const id = account();
  if (id === undefined) return undefined;
  const name = queueName(id);
  let opened = outboxes.get(name);
  if (!opened) {
    opened = Outbox.open({ name });
    outboxes.set(name, opened);
  }
  return opened;
}

function signedOut(): Error {
  return new Error("not signed in: there is no outbox to use");
}

/** Calls `listener` after each drain and each change to the queue. */
export function onSync(listener: (report: DrainReport) => void): void {
  listeners.add(listener);
}

function tell(report: DrainReport): void {
  client.consistency.observe(report.consistencyToken);
  if (retryTimer !== undefined) clearTimeout(retryTimer);
  retryTimer = undefined;
  if (report.state === "waiting" && report.retryAt !== undefined) {
    retryTimer = setTimeout(() => void requestDrain(), Math.max(0, report.retryAt - Date.now()));
  }
  if (report.state === "unauthenticated") {
    void refresh().then((ok) => {
      if (ok) void requestDrain();
    });
  }
  for (const listener of listeners) listener(report);
}

/** Registers the service worker (production builds; the dev server replays in the page). */
export async function startSync(): Promise<void> {
  new BroadcastChannel(CHANNEL).addEventListener("message", (event: MessageEvent<DrainReport>) => {
    if (event.data.type === "drained") tell(event.data);
  });
  if (!import.meta.env.DEV && "serviceWorker" in navigator) {
    try {
      const registration = await navigator.serviceWorker.register("/sw.js", { type: "module", scope: "/" });
      const ready = await navigator.serviceWorker.ready;
      worker = ready.active ?? registration.active ?? undefined;
    } catch (error) {
      // No service worker (private mode, an old browser): the page replays the queue itself.
      console.warn("service worker unavailable, replaying in the page", error);
    }
  }
  window.addEventListener("online", () => void requestDrain());
  window.addEventListener("offline", () => void announce());
  await requestDrain();
}

/** Queues a command and, when online, starts sending at once. */
export async function enqueue(command: Command): Promise<OutboxEntry> {
  const opened = outbox();
  if (!opened) throw signedOut();
  const entry = await (await opened).enqueue(command);
  await requestDrain();
  return entry;
}

/** Settles the entry that stopped the queue, then goes on. */
export async function resolve(entryId: string, resolution: Resolution): Promise<void> {
  const opened = outbox();
  if (!opened) throw signedOut();
  await (await opened).resolve(entryId, resolution);
  await requestDrain();
}

/** What is queued, oldest first. */
export async function queued(): Promise<OutboxEntry[]> {
  const opened = outbox();
  return opened ? (await opened).entries() : [];
}

async function announce(): Promise<void> {
  const entries = await queued();
  const first = entries[0];
  const state: DrainReport["state"] = !first ? "empty" : first.state === "pending" ? "waiting" : "blocked";
  tell({ type: "drained", state, applied: 0, consistencyToken: undefined });
}

/** Replays the queue unless the browser says it is offline (then it waits for `online`). */
export async function requestDrain(): Promise<void> {
  const id = account();
  if (!navigator.onLine || id === undefined) return announce();
  if (worker) {
    const request: DrainRequest = { type: "drain", queue: queueName(id), token: token() };
    worker.postMessage(request);
    return;
  }
  try {
    const opened = outbox();
    if (!opened) return;
    const result = await (await opened).drain({
      getToken: async ({ refresh: renew }) => {
        if (!renew) return token();
        return (await refresh()) ? token() : undefined;
      },
    });
    tell(report(result));
  } catch (error) {
    console.error("replaying the outbox failed", error);
    tell({ type: "drained", state: "error", applied: 0, consistencyToken: undefined });
  }
}
