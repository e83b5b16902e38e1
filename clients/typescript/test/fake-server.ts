// A small stand-in for the command API's rules that matter to the outbox: versions and
// If-Match, idempotency keys with replay, scripted failures. Unit tests only; the e2e test in
// web/ runs against the real stack.

export interface Recorded {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

type Scripted = Response | "network-error";

export class FakeServer {
  readonly requests: Recorded[] = [];
  readonly versions = new Map<string, number>();
  readonly fields = new Map<string, Record<string, unknown>>();
  /** Accepted commands by idempotency key (what the audit log would show). */
  readonly applied: string[] = [];
  private readonly stored = new Map<string, { status: number; body: string }>();
  private readonly script: Scripted[] = [];
  /** Answer 401 to tokens other than this one. */
  validToken = "t1";

  /** The next requests get these answers instead of the rules (in order). */
  then(...answers: Scripted[]): this {
    this.script.push(...answers);
    return this;
  }

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input), "http://chronicle.test");
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((value, key) => (headers[key] = value));
    const body: unknown = typeof init?.body === "string" ? JSON.parse(init.body) : undefined;
    this.requests.push({ method: init?.method ?? "GET", path: url.pathname, headers, body });
    const next = this.script.shift();
    if (next === "network-error") throw new TypeError("Failed to fetch");
    if (next) return next;
    if (headers["authorization"] !== `Bearer ${this.validToken}`) return problem(401, "/problems/unauthenticated");
    const key = headers["idempotency-key"] ?? "";
    const replay = this.stored.get(key);
    if (replay) return new Response(replay.body, { status: replay.status, headers: { "content-type": "application/json", "idempotent-replayed": "true" } });
    const answer = this.handle(init?.method ?? "GET", url.pathname, headers["if-match"], body);
    if (answer.status < 300) {
      this.applied.push(key);
      this.stored.set(key, { status: answer.status, body: JSON.stringify(answer.body) });
    }
    return new Response(JSON.stringify(answer.body), {
      status: answer.status,
      headers: { "content-type": answer.status < 300 ? "application/json" : "application/problem+json" },
    });
  };

  private handle(method: string, path: string, ifMatch: string | undefined, body: unknown): { status: number; body: unknown } {
    const fields = (body ?? {}) as Record<string, unknown>;
    if (method === "POST" && path === "/api/v1/projects") {
      const id = String(fields["id"]);
      if (this.versions.has(id)) return { status: 409, body: { type: "/problems/conflict", title: "Conflict", status: 409, code: "already_exists" } };
      this.versions.set(id, 1);
      this.fields.set(id, { ...fields });
      return { status: 201, body: { id, version: 1, consistency_token: `ct-${this.applied.length + 1}` } };
    }
    const match = /^\/api\/v1\/projects\/([^/]+)$/.exec(path);
    if (method === "PATCH" && match?.[1]) {
      const id = match[1];
      const version = this.versions.get(id);
      if (version === undefined) return { status: 404, body: { type: "/problems/not-found", title: "Not found", status: 404 } };
      if (typeof fields["name"] === "string" && fields["name"].length === 0) {
        return { status: 422, body: { type: "/problems/validation", title: "Validation failed", status: 422, errors: [{ field: "name", message: "must be 1 to 120 characters" }] } };
      }
      if (ifMatch !== undefined && ifMatch !== `"${version}"`) {
        return {
          status: 412,
          body: { type: "/problems/precondition-failed", title: "Precondition failed", status: 412, current_version: version, current: { id, ...this.fields.get(id), version } },
        };
      }
      this.versions.set(id, version + 1);
      this.fields.set(id, { ...this.fields.get(id), ...fields });
      return { status: 200, body: { id, version: version + 1, consistency_token: `ct-${this.applied.length + 1}` } };
    }
    return { status: 404, body: { type: "/problems/not-found", title: "Not found", status: 404 } };
  }

  /** A concurrent edit by someone else, straight into the state. */
  editBehindTheBack(id: string, fields: Record<string, unknown>): void {
    this.versions.set(id, (this.versions.get(id) ?? 0) + 1);
    this.fields.set(id, { ...this.fields.get(id), ...fields });
  }
}

/** A problem+json answer. */
export function problem(status: number, type: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ type, title: type, status, ...extra }), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}
