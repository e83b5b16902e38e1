// The offline outbox: commands are queued in IndexedDB and sent in order, each with its own
// Idempotency-Key and the If-Match version the user saw, so a queue replayed after hours
// offline applies each command at most once and turns every lost race into a decision.
// The protocol is docs/offline-replay.md.

import { backoffDelay, readProblem, retryAfterMs, type BackoffOptions, type Problem } from "./problem.ts";
import { openDatabase, OutboxStore, type ExpectedVersion, type OutboxEntry } from "./store.ts";

export type { OutboxEntry, ExpectedVersion, EntryState } from "./store.ts";

/** A command to queue. */
export interface Command {
  method: OutboxEntry["method"];
  /** Path from the API origin, e.g. `/api/v1/projects/<id>`. */
  path: string;
  body?: unknown;
  /** The aggregate the command changes (e.g. `projects/<id>`): its commands chain versions. */
  aggregate?: string;
  /** The version the user saw (`If-Match`); omit for creates. */
  ifMatch?: number | null;
  label?: string;
}

/** A command's success answer (`{id, version, consistency_token}` for most commands). */
export interface Applied {
  entry: OutboxEntry;
  status: number;
  body: Record<string, unknown> | undefined;
  /** True when the server replayed a stored answer (`Idempotent-Replayed: true`). */
  replayed: boolean;
}

/** A 412 or 409 the queue cannot settle alone. */
export interface Conflict {
  entry: OutboxEntry;
  problem: Problem;
}

/** What to do with an entry that stopped the queue. */
export type Resolution =
  /** Send this body instead, expecting `ifMatch` (e.g. the 412's `current_version`). A new
   * Idempotency-Key is chosen: the same key with another body is refused with 422. */
  | { action: "resend"; body: unknown; ifMatch: number | null }
  /** Drop the entry. `version` is what the next queued command on the aggregate expects
   * instead of this one's answer; without it, it expects what this one expected. */
  | { action: "discard"; version?: number | null };

/** How a drain ended. */
export type DrainOutcome =
  | { state: "empty" }
  /** A transient failure; the next attempt is due at `retryAt` (epoch ms). */
  | { state: "waiting"; retryAt: number; entry: OutboxEntry }
  /** The first entry needs a decision (`resolve`). */
  | { state: "blocked"; entry: OutboxEntry }
  /** No usable access token even after a refresh: sign in again, then drain. */
  | { state: "unauthenticated"; entry: OutboxEntry };

/** What a drain reports. */
export interface DrainResult {
  outcome: DrainOutcome;
  /** Commands the server accepted during this drain. */
  applied: Applied[];
  /** The newest consistency token, to send as `X-Consistency-Token` on the next read. */
  consistencyToken: string | undefined;
}

/** The context a drain runs in: the page or the service worker. */
export interface DrainOptions {
  /** The API origin (`""` for same-origin relative URLs, as in the PWA). */
  baseUrl?: string;
  /** The access token; `refresh` asks for a new one after a 401. */
  getToken: (options: { refresh: boolean }) => Promise<string | undefined>;
  fetch?: typeof fetch;
  /** Called on 412 and on 409 (other than `idempotency_in_flight`); a resolution returned
   * here is applied at once, `undefined` leaves the entry as `conflict` for a person. */
  onConflict?: (conflict: Conflict) => Promise<Resolution | undefined> | Resolution | undefined;
  /** Called when an entry is refused for good; same contract as `onConflict`. */
  onFailure?: (conflict: Conflict) => Promise<Resolution | undefined> | Resolution | undefined;
  /** Called after each accepted command. */
  onApplied?: (applied: Applied) => void;
  backoff?: BackoffOptions;
  now?: () => number;
}

/** Options of [`Outbox.open`]. */
export interface OpenOptions {
  /** The IndexedDB database's name (one per signed-in account is wise). */
  name?: string;
  indexedDB?: IDBFactory;
  /** Creates ids for entries, idempotency keys and created resources. */
  randomId?: () => string;
}

const TRANSIENT = new Set([408, 425, 429, 500, 502, 503, 504]);

/** The queue. Safe to open in several contexts at once: drains are serialised. */
export class Outbox {
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: OutboxStore,
    private readonly lockName: string,
    private readonly randomId: () => string,
  ) {}

  /** Opens the queue in `options.indexedDB` (the global one by default). */
  static async open(options: OpenOptions = {}): Promise<Outbox> {
    const factory = options.indexedDB ?? globalThis.indexedDB;
    const name = options.name ?? "chronicle-outbox";
    const db = await openDatabase(factory, name);
    return new Outbox(new OutboxStore(db), `chronicle-outbox:${name}`, options.randomId ?? (() => crypto.randomUUID()));
  }

  /** A new id, e.g. the client-chosen id of a resource to create. */
  newId(): string {
    return this.randomId();
  }

  /**
   * Queues a command with a fresh Idempotency-Key. If another command on the same aggregate
   * is still queued, this one expects the version that one produces, not `ifMatch`.
   */
  async enqueue(command: Command): Promise<OutboxEntry> {
    const entry: OutboxEntry = {
      id: this.randomId(),
      method: command.method,
      path: command.path,
      ifMatch: command.ifMatch ?? null,
      idempotencyKey: this.randomId(),
      state: "pending",
      attempts: 0,
      notBefore: 0,
      createdAt: Date.now(),
    };
    if (command.body !== undefined) entry.body = command.body;
    if (command.aggregate !== undefined) entry.aggregate = command.aggregate;
    if (command.label !== undefined) entry.label = command.label;
    return this.store.add(entry, command.ifMatch !== undefined && command.ifMatch !== null);
  }

  /** Every queued entry, oldest first. */
  entries(): Promise<OutboxEntry[]> {
    return this.store.all();
  }

  /** The consistency token of the newest applied command. */
  consistencyToken(): Promise<string | undefined> {
    return this.store.consistencyToken();
  }

  /** Settles an entry in `conflict` or `failed` state (or withdraws a pending one). */
  async resolve(entryId: string, resolution: Resolution): Promise<void> {
    await this.exclusive(async () => this.applyResolution(entryId, resolution));
  }

  /** Forgets every queued command. */
  clear(): Promise<void> {
    return this.exclusive(() => this.store.clear());
  }

  /** Closes the database connection. */
  close(): void {
    this.store.close();
  }

  /**
   * Sends queued commands in order until the queue is empty, an entry needs a decision, or
   * a transient failure asks to wait. Never runs twice at once for one database (Web Locks
   * where the platform has them, so a page and its service worker take turns).
   */
  drain(options: DrainOptions): Promise<DrainResult> {
    return this.exclusive(() => this.drainLocked(options));
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
    const run = locks ? (): Promise<T> => locks.request(this.lockName, work) as Promise<T> : work;
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async applyResolution(entryId: string, resolution: Resolution): Promise<void> {
    const entry = await this.store.get(entryId);
    if (!entry) return;
    if (resolution.action === "discard") {
      const version: ExpectedVersion = resolution.version === undefined ? entry.ifMatch : resolution.version;
      await this.store.remove(entry, version);
      return;
    }
    const { problem: _dropped, ...rest } = entry;
    await this.store.put({
      ...rest,
      body: resolution.body,
      ifMatch: resolution.ifMatch,
      idempotencyKey: this.randomId(),
      state: "pending",
      attempts: 0,
      notBefore: 0,
    });
  }

  private async drainLocked(options: DrainOptions): Promise<DrainResult> {
    const now = options.now ?? Date.now;
    const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    const applied: Applied[] = [];
    const result = async (outcome: DrainOutcome): Promise<DrainResult> => ({
      outcome,
      applied,
      consistencyToken: await this.store.consistencyToken(),
    });

    for (;;) {
      const entry = await this.store.first();
      if (!entry) return result({ state: "empty" });
      if (entry.state !== "pending") return result({ state: "blocked", entry });
      if (entry.notBefore > now()) return result({ state: "waiting", retryAt: entry.notBefore, entry });
      if (entry.ifMatch === "previous") {
        // Its predecessor is gone without handing on a version: only a store written by
        // another version of this module can get here. Ask rather than send unconditionally.
        const stuck: OutboxEntry = {
          ...entry,
          state: "conflict",
          problem: { type: "/problems/client-missing-version", title: "The version this edit was based on is unknown", status: 412 },
        };
        await this.store.put(stuck);
        return result({ state: "blocked", entry: stuck });
      }

      let response: Response;
      try {
        response = await this.send(entry, options, doFetch, false);
        if (response.status === 401) response = await this.send(entry, options, doFetch, true);
      } catch {
        // Offline, DNS, a reset connection: the command may or may not have arrived; the
        // same Idempotency-Key on the next attempt makes either case safe.
        const waiting = await this.postpone(entry, undefined, undefined, options, now());
        return result({ state: "waiting", retryAt: waiting.notBefore, entry: waiting });
      }

      if (response.ok) {
        const body = await readJson(response);
        const version = typeof body?.["version"] === "number" ? body["version"] : entry.ifMatch;
        const token = typeof body?.["consistency_token"] === "string" ? body["consistency_token"] : undefined;
        await this.store.remove(entry, version, { consistencyToken: token });
        const done: Applied = { entry, status: response.status, body, replayed: response.headers.get("idempotent-replayed") === "true" };
        applied.push(done);
        options.onApplied?.(done);
        continue;
      }

      const problem = await readProblem(response);
      if (response.status === 401) return result({ state: "unauthenticated", entry });
      if (TRANSIENT.has(response.status) || (response.status === 409 && problem.code === "idempotency_in_flight")) {
        const waiting = await this.postpone(entry, response, problem, options, now());
        return result({ state: "waiting", retryAt: waiting.notBefore, entry: waiting });
      }

      const isConflict = response.status === 412 || response.status === 409;
      const stopped: OutboxEntry = { ...entry, state: isConflict ? "conflict" : "failed", problem };
      await this.store.put(stopped);
      const callback = isConflict ? options.onConflict : options.onFailure;
      const resolution = callback ? await callback({ entry: stopped, problem }) : undefined;
      if (!resolution) return result({ state: "blocked", entry: stopped });
      await this.applyResolution(stopped.id, resolution);
    }
  }

  private async send(entry: OutboxEntry, options: DrainOptions, doFetch: typeof fetch, refresh: boolean): Promise<Response> {
    const headers = new Headers({ accept: "application/json, application/problem+json", "idempotency-key": entry.idempotencyKey });
    if (typeof entry.ifMatch === "number") headers.set("if-match", `"${entry.ifMatch}"`);
    const token = await options.getToken({ refresh });
    if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
    const init: RequestInit = { method: entry.method, headers, credentials: "same-origin" };
    if (entry.body !== undefined) {
      headers.set("content-type", "application/json");
      init.body = JSON.stringify(entry.body);
    }
    return doFetch(`${options.baseUrl ?? ""}${entry.path}`, init);
  }

  private async postpone(
    entry: OutboxEntry,
    response: Response | undefined,
    problem: Problem | undefined,
    options: DrainOptions,
    now: number,
  ): Promise<OutboxEntry> {
    const attempts = entry.attempts + 1;
    const server = response ? retryAfterMs(response.headers.get("retry-after"), problem, now) : undefined;
    const waiting: OutboxEntry = { ...entry, attempts, notBefore: now + backoffDelay(attempts, server, options.backoff) };
    if (problem) waiting.problem = problem;
    await this.store.put(waiting);
    return waiting;
  }
}

async function readJson(response: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const text = await response.text();
    if (text.length === 0) return undefined;
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
