// Problem details (RFC 9457) as Chronicle answers them, and the `Retry-After` arithmetic.

/** One invalid field of a 422 answer. */
export interface FieldError {
  field: string;
  message: string;
}

/** A refusal's body: `application/problem+json`, with Chronicle's extension members. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  request_id?: string;
  errors?: FieldError[];
  /** 412: the version the aggregate is at now. */
  current_version?: number;
  /** 412: the resource as the query API would serve it now (absent on older servers). */
  current?: Record<string, unknown>;
  /** 409: a stable machine-readable reason (`already_exists`, `archived`, ...). */
  code?: string;
  /** 429 and 503: the same number of seconds as the `Retry-After` header. */
  retry_after?: number;
  [extension: string]: unknown;
}

/** Reads a problem body; a body that is not one becomes a minimal problem for `status`. */
export async function readProblem(response: Response): Promise<Problem> {
  const fallback: Problem = { type: "about:blank", title: response.statusText || "Error", status: response.status };
  try {
    const text = await response.text();
    if (text.length === 0) return fallback;
    const body: unknown = JSON.parse(text);
    if (typeof body !== "object" || body === null || Array.isArray(body)) return fallback;
    return { ...fallback, ...(body as Partial<Problem>), status: response.status };
  } catch {
    // A proxy's HTML error page or a cut connection: the status alone still decides.
    return fallback;
  }
}

/**
 * Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date) or, failing that,
 * the problem's `retry_after`; `undefined` when neither says anything usable.
 */
export function retryAfterMs(header: string | null, problem?: Problem, now: number = Date.now()): number | undefined {
  if (header !== null) {
    const trimmed = header.trim();
    if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
    const date = Date.parse(trimmed);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  if (problem?.retry_after !== undefined && Number.isFinite(problem.retry_after) && problem.retry_after >= 0) {
    return problem.retry_after * 1000;
  }
  return undefined;
}

/** Settings of [`backoffDelay`]. */
export interface BackoffOptions {
  /** The first retry's ceiling, in milliseconds. */
  baseMs?: number;
  /** No wait grows past this, in milliseconds (a `Retry-After` may still ask for longer). */
  capMs?: number;
  /** A number in [0, 1); injectable so tests are deterministic. */
  random?: () => number;
}

/**
 * How long to wait before attempt `attempt + 1` (`attempt` counts failures so far, from 1):
 * exponential with "equal jitter" (half fixed, half random) so that many clients coming back
 * online at once spread out, and never less than the server's `Retry-After`.
 */
export function backoffDelay(attempt: number, serverMs: number | undefined, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 1000;
  const cap = options.capMs ?? 60_000;
  const random = options.random ?? Math.random;
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const ceiling = Math.min(cap, base * 2 ** exponent);
  const jittered = ceiling / 2 + random() * (ceiling / 2);
  return Math.round(Math.max(jittered, serverMs ?? 0));
}
