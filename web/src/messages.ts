// The messages between the page and the service worker about the outbox.

import type { DrainResult } from "@chronicle/client";

/** Page → service worker: send what is queued, with this access token. */
export interface DrainRequest {
  type: "drain";
  /** The signed-in account's queue (an IndexedDB database name). */
  queue: string;
  token: string | undefined;
}

/** The IndexedDB database of an account's queue. */
export function queueName(accountId: string): string {
  return `chronicle-outbox-${accountId}`;
}

/** Service worker → every page (BroadcastChannel `chronicle-outbox`): how a drain ended. */
export interface DrainReport {
  type: "drained";
  state: "empty" | "waiting" | "blocked" | "unauthenticated" | "error";
  retryAt?: number;
  applied: number;
  consistencyToken: string | undefined;
}

/** The BroadcastChannel both sides use. */
export const CHANNEL = "chronicle-outbox";

/** A drain's result as the message the service worker sends. */
export function report(result: DrainResult): DrainReport {
  const message: DrainReport = {
    type: "drained",
    state: result.outcome.state,
    applied: result.applied.length,
    consistencyToken: result.consistencyToken,
  };
  if (result.outcome.state === "waiting") message.retryAt = result.outcome.retryAt;
  return message;
}
