// The service worker: replays the outbox when a page asks (so replay goes on while pages come
// and go, one at a time for the whole origin) and keeps the app shell for offline starts.

import { Outbox } from "@chronicle/client";
import { CHANNEL, report, type DrainReport, type DrainRequest } from "./messages.ts";

// The DOM typings are the project's; the few service-worker types used here are declared.
interface ExtendableEvent extends Event {
  waitUntil(work: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  request: Request;
  respondWith(answer: Promise<Response> | Response): void;
}
interface ExtendableMessageEvent extends ExtendableEvent {
  data: unknown;
}
interface WorkerScope {
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
  addEventListener(type: "install" | "activate", listener: (event: ExtendableEvent) => void): void;
  addEventListener(type: "fetch", listener: (event: FetchEvent) => void): void;
  addEventListener(type: "message", listener: (event: ExtendableMessageEvent) => void): void;
}
const scope = self as unknown as WorkerScope;

const SHELL_CACHE = "chronicle-shell-v1";
const channel = new BroadcastChannel(CHANNEL);
const outboxes = new Map<string, Promise<Outbox>>();
let lastToken: string | undefined;

scope.addEventListener("install", (event) => event.waitUntil(scope.skipWaiting()));
scope.addEventListener("activate", (event) => event.waitUntil(scope.clients.claim()));

scope.addEventListener("message", (event) => {
  const data = event.data as Partial<DrainRequest> | undefined;
  if (data?.type !== "drain" || typeof data.queue !== "string") return;
  lastToken = data.token;
  event.waitUntil(drain(data.queue));
});

async function drain(queue: string): Promise<void> {
  let message: DrainReport;
  try {
    let opened = outboxes.get(queue);
    if (!opened) {
      opened = Outbox.open({ name: queue });
      outboxes.set(queue, opened);
    }
    const outbox = await opened;
    // After a 401 the page refreshes (it owns the refresh cookie's rotation) and asks again.
    const result = await outbox.drain({ getToken: async ({ refresh }) => (refresh ? undefined : lastToken) });
    message = report(result);
  } catch (error) {
    console.error("replaying the outbox failed", error);
    message = { type: "drained", state: "error", applied: 0, consistencyToken: undefined };
  }
  channel.postMessage(message);
}

// The app shell: pages network-first with the cached copy as the offline fallback; built
// assets (content-hashed names) from the cache once seen. The APIs are never cached here.
scope.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  if (request.mode === "navigate") {
    event.respondWith(
      fetch(request)
        .then(async (answer) => {
          if (answer.ok) await (await caches.open(SHELL_CACHE)).put("/", answer.clone());
          return answer;
        })
        .catch(async () => (await caches.match("/")) ?? Response.error()),
    );
    return;
  }
  if (url.pathname.startsWith("/assets/") || url.pathname === "/manifest.webmanifest" || url.pathname === "/icon.svg") {
    event.respondWith(
      caches.match(request).then(
        (cached) =>
          cached ??
          fetch(request).then(async (answer) => {
            if (answer.ok) await (await caches.open(SHELL_CACHE)).put(request, answer.clone());
            return answer;
          }),
      ),
    );
  }
});
