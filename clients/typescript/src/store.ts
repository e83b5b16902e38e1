// The outbox's IndexedDB database: one object store of queued commands in arrival order and
// one of small facts (the newest consistency token). Shared by the page and the service worker.

import type { Problem } from "./problem.ts";

/** Where a queued command stands. */
export type EntryState =
  /** Waiting to be sent (perhaps after `notBefore`). */
  | "pending"
  /** Refused with 412 or 409: the queue waits for a decision (see `Outbox.resolve`). */
  | "conflict"
  /** Refused for good (400, 403, 404, 413, 415, 422): the queue waits until it is discarded. */
  | "failed";

/** The version a queued command expects: a number, the answer to the command before it on the
 * same aggregate (`"previous"`), or none (`null`: creates and unconditional commands). */
export type ExpectedVersion = number | "previous" | null;

/** One queued command, as stored. */
export interface OutboxEntry {
  /** Arrival order; assigned by IndexedDB. */
  seq?: number;
  /** This entry's own id (not the resource's). */
  id: string;
  method: "POST" | "PATCH" | "PUT" | "DELETE";
  /** Path from the API origin, e.g. `/api/v1/projects/<id>`. */
  path: string;
  body?: unknown;
  /** Commands on one aggregate (e.g. `projects/<id>`) chain their versions. */
  aggregate?: string;
  ifMatch: ExpectedVersion;
  /** The version the user saw when queueing (what `ifMatch` was before any chaining). */
  seenVersion?: number;
  /** Chosen once when queued and sent on every attempt, so a repeat is a replay. */
  idempotencyKey: string;
  state: EntryState;
  /** Failed attempts so far (network errors, 429, 503, ...). */
  attempts: number;
  /** Epoch milliseconds before which the entry is not sent again. */
  notBefore: number;
  /** The refusal that stopped the entry (`conflict`, `failed`), or the last transient one. */
  problem?: Problem;
  createdAt: number;
  /** Free text for a UI ("Rename to Apollo"). */
  label?: string;
}

const ENTRIES = "entries";
const META = "meta";

/** Where this device's last applied edits of an aggregate started (`seen`) and ended. */
interface AppliedChain {
  key: string;
  seen: number;
  version: number;
}

function chainKey(aggregate: string): string {
  return `chain:${aggregate}`;
}

/** Opens (and on first use creates) the outbox database. */
export function openDatabase(factory: IDBFactory, name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = factory.open(name, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      const entries = db.createObjectStore(ENTRIES, { keyPath: "seq", autoIncrement: true });
      entries.createIndex("id", "id", { unique: true });
      db.createObjectStore(META, { keyPath: "key" });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("opening the outbox database failed"));
    request.onblocked = () => reject(new Error("the outbox database is held open by an older version"));
  });
}

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

function committed(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

/** Typed access to the two object stores; every method is one transaction. */
export class OutboxStore {
  constructor(private readonly db: IDBDatabase) {}

  /** Closes the connection (tests, and a page that deletes its data). */
  close(): void {
    this.db.close();
  }

  /** Every entry, oldest first. */
  async all(): Promise<OutboxEntry[]> {
    const tx = this.db.transaction(ENTRIES, "readonly");
    return done(tx.objectStore(ENTRIES).getAll() as IDBRequest<OutboxEntry[]>);
  }

  /** The oldest entry, if any. */
  async first(): Promise<OutboxEntry | undefined> {
    const tx = this.db.transaction(ENTRIES, "readonly");
    const cursor = await done(tx.objectStore(ENTRIES).openCursor());
    return cursor ? (cursor.value as OutboxEntry) : undefined;
  }

  /** The entry with this id, if still queued. */
  async get(id: string): Promise<OutboxEntry | undefined> {
    const tx = this.db.transaction(ENTRIES, "readonly");
    return done(tx.objectStore(ENTRIES).index("id").get(id) as IDBRequest<OutboxEntry | undefined>);
  }

  /**
   * Appends an entry. When `chain` is set and another entry on the same aggregate is still
   * queued, the new one expects "the version the previous one produces" instead: the user's
   * view already includes their own queued edit. Checked and written in one transaction.
   */
  async add(entry: OutboxEntry, chain: boolean): Promise<OutboxEntry> {
    const tx = this.db.transaction([ENTRIES, META], "readwrite");
    const store = tx.objectStore(ENTRIES);
    const stored = { ...entry };
    if (chain && entry.aggregate !== undefined && typeof entry.ifMatch === "number") {
      stored.seenVersion = entry.ifMatch;
      const queued = await done(store.getAll() as IDBRequest<OutboxEntry[]>);
      if (queued.some((other) => other.aggregate === entry.aggregate)) {
        stored.ifMatch = "previous";
      } else {
        // The screen may not have caught up with this device's own applied edits yet: if
        // the user saw the version our last chain on this aggregate started from, everything
        // since is theirs, so expect where that chain ended. Anyone else's change still 412s.
        const last = (await done(tx.objectStore(META).get(chainKey(entry.aggregate)))) as AppliedChain | undefined;
        if (last && last.seen === entry.ifMatch) stored.ifMatch = last.version;
      }
    }
    const seq = await done(store.add(stored));
    await committed(tx);
    return { ...stored, seq: seq as number };
  }

  /** Replaces an entry (same `seq`). */
  async put(entry: OutboxEntry): Promise<void> {
    const tx = this.db.transaction(ENTRIES, "readwrite");
    tx.objectStore(ENTRIES).put(entry);
    await committed(tx);
  }

  /**
   * Removes an entry and hands its outcome to the next entry on the same aggregate that was
   * waiting for it (`ifMatch: "previous"`), in one transaction, so a crash between the two
   * cannot leave the successor without a version. `version` is what the successor expects;
   * `applied` is set when the server accepted the entry (not when it is discarded).
   */
  async remove(entry: OutboxEntry, version: ExpectedVersion, applied?: { consistencyToken: string | undefined }): Promise<void> {
    const tx = this.db.transaction([ENTRIES, META], "readwrite");
    const store = tx.objectStore(ENTRIES);
    if (entry.seq !== undefined) store.delete(entry.seq);
    if (entry.aggregate !== undefined) {
      const queued = await done(store.getAll() as IDBRequest<OutboxEntry[]>);
      const successor = queued.find((other) => other.seq !== entry.seq && other.aggregate === entry.aggregate);
      if (successor && successor.ifMatch === "previous") store.put({ ...successor, ifMatch: version });
      if (applied && entry.seenVersion !== undefined && typeof version === "number") {
        const applied: AppliedChain = { key: chainKey(entry.aggregate), seen: entry.seenVersion, version };
        tx.objectStore(META).put(applied);
      }
    }
    if (applied?.consistencyToken !== undefined) tx.objectStore(META).put({ key: "consistency_token", value: applied.consistencyToken });
    await committed(tx);
  }

  /** The consistency token of the newest command the outbox saw applied. */
  async consistencyToken(): Promise<string | undefined> {
    const tx = this.db.transaction(META, "readonly");
    const row = (await done(tx.objectStore(META).get("consistency_token"))) as { value: string } | undefined;
    return row?.value;
  }

  /** Drops every entry (sign-out on a shared device). */
  async clear(): Promise<void> {
    const tx = this.db.transaction([ENTRIES, META], "readwrite");
    tx.objectStore(ENTRIES).clear();
    tx.objectStore(META).clear();
    await committed(tx);
  }
}
