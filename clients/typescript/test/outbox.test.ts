import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import { Outbox, type DrainOptions } from "../src/outbox.ts";
import { backoffDelay, retryAfterMs } from "../src/problem.ts";
import { FakeServer, problem } from "./fake-server.ts";

const PROJECT = "0192f0c4-0000-7000-8000-000000000001";

async function setup(versionSeen = 1): Promise<{ outbox: Outbox; server: FakeServer; options: DrainOptions; clock: { now: number } }> {
  let n = 0;
  const outbox = await Outbox.open({ indexedDB: new IDBFactory(), randomId: () => `id-${++n}` });
  const server = new FakeServer();
  server.versions.set(PROJECT, versionSeen);
  server.fields.set(PROJECT, { name: "Apollo", description: "" });
  const clock = { now: 1_000_000 };
  const options: DrainOptions = {
    getToken: async () => "t1",
    fetch: server.fetch,
    now: () => clock.now,
    backoff: { random: () => 0.5 },
  };
  return { outbox, server, options, clock };
}

function edit(name: string, ifMatch = 1) {
  return { method: "PATCH" as const, path: `/api/v1/projects/${PROJECT}`, aggregate: `projects/${PROJECT}`, ifMatch, body: { name } };
}

describe("outbox", () => {
  it("sends queued commands in order, each with its own idempotency key, and empties", async () => {
    const { outbox, server, options } = await setup();
    const id = outbox.newId();
    await outbox.enqueue({ method: "POST", path: "/api/v1/projects", aggregate: `projects/${id}`, body: { id, name: "Gemini" } });
    await outbox.enqueue(edit("Apollo 2"));

    const result = await outbox.drain(options);

    expect(result.outcome.state).toBe("empty");
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /api/v1/projects", `PATCH /api/v1/projects/${PROJECT}`]);
    const keys = server.requests.map((r) => r.headers["idempotency-key"]);
    expect(new Set(keys).size).toBe(2);
    expect(server.requests[0]?.headers["if-match"]).toBeUndefined();
    expect(server.requests[1]?.headers["if-match"]).toBe('"1"');
    expect(server.requests[1]?.headers["authorization"]).toBe("Bearer t1");
    expect(result.applied).toHaveLength(2);
    expect(result.consistencyToken).toBe("ct-2");
    expect(await outbox.consistencyToken()).toBe("ct-2");
    expect(await outbox.entries()).toEqual([]);
  });

  it("chains edits of one aggregate: each expects the version the one before produced", async () => {
    const { outbox, server, options } = await setup(4);
    await outbox.enqueue(edit("one", 4));
    await outbox.enqueue(edit("two", 4));
    await outbox.enqueue(edit("three", 4));

    const result = await outbox.drain(options);

    expect(result.outcome.state).toBe("empty");
    expect(server.requests.map((r) => r.headers["if-match"])).toEqual(['"4"', '"5"', '"6"']);
    expect(server.fields.get(PROJECT)?.["name"]).toBe("three");
    expect(server.versions.get(PROJECT)).toBe(7);
  });

  it("keeps the key across a lost connection, so a command that did arrive is applied once", async () => {
    const { outbox, server, options, clock } = await setup();
    await outbox.enqueue(edit("once"));
    // The first attempt reaches the server but the answer is lost on the way back.
    const realFetch = server.fetch;
    let calls = 0;
    const lossy: typeof fetch = async (input, init) => {
      const answer = await realFetch(input, init);
      if (++calls === 1) throw new TypeError("connection reset");
      return answer;
    };

    const first = await outbox.drain({ ...options, fetch: lossy });
    expect(first.outcome.state).toBe("waiting");
    const [waiting] = await outbox.entries();
    expect(waiting?.attempts).toBe(1);

    clock.now += 60_000;
    const second = await outbox.drain({ ...options, fetch: lossy });

    expect(second.outcome.state).toBe("empty");
    expect(second.applied[0]?.replayed).toBe(true);
    expect(server.requests[0]?.headers["idempotency-key"]).toBe(server.requests[1]?.headers["idempotency-key"]);
    expect(server.applied).toHaveLength(1);
    expect(server.versions.get(PROJECT)).toBe(2);
  });

  it("does not send before the backoff is over", async () => {
    const { outbox, server, options, clock } = await setup();
    server.then("network-error");
    await outbox.enqueue(edit("later"));
    const first = await outbox.drain(options);
    if (first.outcome.state !== "waiting") throw new Error(`expected waiting, got ${first.outcome.state}`);

    clock.now = first.outcome.retryAt - 1;
    const early = await outbox.drain(options);

    expect(early.outcome.state).toBe("waiting");
    expect(server.requests).toHaveLength(1);
  });

  it("honours Retry-After on 503 and 429 even when the backoff would be shorter", async () => {
    const { outbox, server, options, clock } = await setup();
    server.then(problem(503, "/problems/unavailable", { retry_after: 7 }, { "retry-after": "7" }));
    await outbox.enqueue(edit("busy"));

    const result = await outbox.drain(options);

    if (result.outcome.state !== "waiting") throw new Error(`expected waiting, got ${result.outcome.state}`);
    expect(result.outcome.retryAt).toBe(clock.now + 7000);
    expect(result.outcome.entry.problem?.status).toBe(503);

    server.then(problem(429, "/problems/rate-limited", { retry_after: 30 }));
    clock.now = result.outcome.retryAt;
    const again = await outbox.drain(options);
    if (again.outcome.state !== "waiting") throw new Error(`expected waiting, got ${again.outcome.state}`);
    expect(again.outcome.retryAt).toBe(clock.now + 30_000);
    expect(again.outcome.entry.attempts).toBe(2);
  });

  it("waits and retries while another attempt with the same key is in flight (409)", async () => {
    const { outbox, server, options, clock } = await setup();
    server.then(problem(409, "/problems/conflict", { code: "idempotency_in_flight" }));
    await outbox.enqueue(edit("racing"));

    const first = await outbox.drain(options);
    expect(first.outcome.state).toBe("waiting");
    clock.now += 60_000;
    const second = await outbox.drain(options);

    expect(second.outcome.state).toBe("empty");
    expect(server.applied).toHaveLength(1);
  });

  it("stops at a 412 with what the server holds, and a resend goes with a new key and the current version", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("mine"));
    await outbox.enqueue(edit("mine again"));
    server.editBehindTheBack(PROJECT, { name: "theirs" });

    const result = await outbox.drain(options);

    if (result.outcome.state !== "blocked") throw new Error(`expected blocked, got ${result.outcome.state}`);
    const { entry } = result.outcome;
    expect(entry.state).toBe("conflict");
    expect(entry.problem?.current_version).toBe(2);
    expect(entry.problem?.current?.["name"]).toBe("theirs");
    expect(server.requests).toHaveLength(1);

    await outbox.resolve(entry.id, { action: "resend", body: { name: "merged" }, ifMatch: 2 });
    const after = await outbox.drain(options);

    expect(after.outcome.state).toBe("empty");
    const [, resent, next] = server.requests;
    expect(resent?.headers["if-match"]).toBe('"2"');
    expect(resent?.headers["idempotency-key"]).not.toBe(server.requests[0]?.headers["idempotency-key"]);
    expect(next?.headers["if-match"]).toBe('"3"');
    expect(server.fields.get(PROJECT)?.["name"]).toBe("mine again");
  });

  it("applies a resolution returned by the conflict callback without stopping", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("mine"));
    server.editBehindTheBack(PROJECT, { description: "theirs" });
    const seen: number[] = [];

    const result = await outbox.drain({
      ...options,
      onConflict: ({ problem }) => {
        seen.push(problem.status);
        return { action: "resend", body: { name: "mine" }, ifMatch: problem.current_version ?? null };
      },
    });

    expect(seen).toEqual([412]);
    expect(result.outcome.state).toBe("empty");
    expect(server.fields.get(PROJECT)).toMatchObject({ name: "mine", description: "theirs" });
  });

  it("keeping theirs discards the edit and the next one expects their version", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("mine"));
    await outbox.enqueue({ ...edit("x"), body: { description: "later" } });
    server.editBehindTheBack(PROJECT, { name: "theirs" });

    const blocked = await outbox.drain(options);
    if (blocked.outcome.state !== "blocked") throw new Error("expected blocked");
    await outbox.resolve(blocked.outcome.entry.id, { action: "discard", version: blocked.outcome.entry.problem?.current_version ?? null });
    const after = await outbox.drain(options);

    expect(after.outcome.state).toBe("empty");
    expect(server.requests.at(-1)?.headers["if-match"]).toBe('"2"');
    expect(server.fields.get(PROJECT)).toMatchObject({ name: "theirs", description: "later" });
  });

  it("parks a refused command as failed; discarding it lets the next one expect what it expected", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit(""));
    await outbox.enqueue(edit("valid"));
    const failures: number[] = [];

    const blocked = await outbox.drain({ ...options, onFailure: ({ problem }) => void failures.push(problem.status) });
    if (blocked.outcome.state !== "blocked") throw new Error("expected blocked");
    expect(blocked.outcome.entry.state).toBe("failed");
    expect(blocked.outcome.entry.problem?.errors?.[0]?.field).toBe("name");
    expect(failures).toEqual([422]);

    await outbox.resolve(blocked.outcome.entry.id, { action: "discard" });
    const after = await outbox.drain(options);

    expect(after.outcome.state).toBe("empty");
    expect(server.requests.at(-1)?.headers["if-match"]).toBe('"1"');
    expect(server.applied).toHaveLength(1);
  });

  it("refreshes the token once after a 401 and reports a second one", async () => {
    const { outbox, server, options } = await setup();
    server.validToken = "t2";
    await outbox.enqueue(edit("fresh"));
    const asked: boolean[] = [];

    const ok = await outbox.drain({ ...options, getToken: async ({ refresh }) => (asked.push(refresh), refresh ? "t2" : "t1") });
    expect(ok.outcome.state).toBe("empty");
    expect(asked).toEqual([false, true]);

    await outbox.enqueue(edit("stale", 2));
    const denied = await outbox.drain({ ...options, getToken: async () => "expired" });
    expect(denied.outcome.state).toBe("unauthenticated");
    expect((await outbox.entries())[0]?.state).toBe("pending");
  });

  it("never sends an entry twice when two drains start at once", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("a"));
    await outbox.enqueue(edit("b"));
    await outbox.enqueue(edit("c"));

    const [one, two] = await Promise.all([outbox.drain(options), outbox.drain(options)]);

    expect(one.applied.length + two.applied.length).toBe(3);
    expect(server.requests).toHaveLength(3);
    expect(server.versions.get(PROJECT)).toBe(4);
  });

  it("survives a reopen: the queue lives in IndexedDB, not in memory", async () => {
    const factory = new IDBFactory();
    const first = await Outbox.open({ indexedDB: factory, name: "persisted" });
    const queued = await first.enqueue(edit("kept"));
    first.close();

    const reopened = await Outbox.open({ indexedDB: factory, name: "persisted" });
    const entries = await reopened.entries();

    expect(entries).toHaveLength(1);
    expect(entries[0]?.idempotencyKey).toBe(queued.idempotencyKey);
    expect(entries[0]?.ifMatch).toBe(1);
  });
});

describe("backoff", () => {
  it("grows exponentially with jitter inside [half, full] of the ceiling, up to the cap", () => {
    expect(backoffDelay(1, undefined, { random: () => 0 })).toBe(500);
    expect(backoffDelay(1, undefined, { random: () => 0.999999 })).toBe(1000);
    expect(backoffDelay(4, undefined, { random: () => 0 })).toBe(4000);
    expect(backoffDelay(40, undefined, { random: () => 0.999999, capMs: 60_000 })).toBe(60_000);
  });

  it("is never shorter than the server asked", () => {
    expect(backoffDelay(1, 120_000, { random: () => 0.5 })).toBe(120_000);
  });

  it("reads Retry-After as seconds or as a date, else the body's retry_after", () => {
    const now = Date.parse("2026-11-30T04:00:00Z");
    expect(retryAfterMs("3", undefined, now)).toBe(3000);
    expect(retryAfterMs("Mon, 30 Nov 2026 04:00:10 GMT", undefined, now)).toBe(10_000);
    expect(retryAfterMs(null, { type: "x", title: "x", status: 503, retry_after: 2 }, now)).toBe(2000);
    expect(retryAfterMs("soon", undefined, now)).toBeUndefined();
  });
});

describe("a screen behind this device's own edits", () => {
  it("an edit made on a stale screen expects where this device's own applied edits ended", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("first"));
    await outbox.drain(options);
    // The page still shows version 1 (it did not re-read), and the user edits again.
    const second = await outbox.enqueue(edit("second", 1));

    const result = await outbox.drain(options);

    expect(second.ifMatch).toBe(2);
    expect(result.outcome.state).toBe("empty");
    expect(server.fields.get(PROJECT)?.["name"]).toBe("second");
  });

  it("still conflicts when someone else changed it after this device's edits", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("first"));
    await outbox.drain(options);
    server.editBehindTheBack(PROJECT, { name: "theirs" });
    await outbox.enqueue(edit("second", 1));

    const result = await outbox.drain(options);

    expect(result.outcome.state).toBe("blocked");
    expect(server.requests.at(-1)?.headers["if-match"]).toBe('"2"');
  });

  it("a screen that saw a newer version is taken at its word", async () => {
    const { outbox, server, options } = await setup();
    await outbox.enqueue(edit("first"));
    await outbox.drain(options);
    server.editBehindTheBack(PROJECT, { description: "theirs" });
    const fresh = await outbox.enqueue(edit("second", 3));

    expect(fresh.ifMatch).toBe(3);
    expect((await outbox.drain(options)).outcome.state).toBe("empty");
  });
});
