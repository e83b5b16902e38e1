// The typed fetch client: openapi-fetch over the generated `paths`, with the bearer token and
// read-your-writes (the newest consistency token goes with every read) added in one place.

import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

/** Options of [`createChronicleClient`]. */
export interface ClientOptions {
  /** The API origin; `""` when the app is served from the same origin as the APIs. */
  baseUrl?: string;
  /** The current access token, if signed in. */
  getToken?: () => string | undefined;
  fetch?: typeof fetch;
}

/** The newest consistency token this client has seen (from commands it or its outbox sent). */
export class ConsistencyTokens {
  private value: string | undefined;

  /** The token reads should wait for, if any. */
  get latest(): string | undefined {
    return this.value;
  }

  /** Remembers a token from a command answer (body `consistency_token` or the header). */
  observe(token: string | undefined | null): void {
    if (token) this.value = token;
  }
}

/** A client for both APIs: one origin, reads and commands told apart by method. */
export interface ChronicleClient {
  api: Client<paths>;
  consistency: ConsistencyTokens;
}

/** Creates the client; every request is authorised and reads wait for the client's writes. */
export function createChronicleClient(options: ClientOptions = {}): ChronicleClient {
  const consistency = new ConsistencyTokens();
  const api = createClient<paths>({
    baseUrl: options.baseUrl ?? "",
    credentials: "same-origin",
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const middleware: Middleware = {
    onRequest({ request }) {
      const token = options.getToken?.();
      if (token !== undefined && !request.headers.has("authorization")) request.headers.set("authorization", `Bearer ${token}`);
      const read = request.method === "GET" || request.method === "HEAD";
      if (read && consistency.latest !== undefined && !request.headers.has("x-consistency-token")) {
        request.headers.set("x-consistency-token", consistency.latest);
      }
      return request;
    },
    onResponse({ request, response }) {
      if (request.method !== "GET" && request.method !== "HEAD") consistency.observe(response.headers.get("x-consistency-token"));
      return response;
    },
  };
  api.use(middleware);
  return { api, consistency };
}


/** A project as the query API serves it. */
export type Project = components["schemas"]["Project"];
/** The public status page. */
export type StatusPage = components["schemas"]["StatusPage"];
/** The answer to a change command: `{id, version, consistency_token}`. */
export type ChangeAnswer = components["schemas"]["ChangeAnswer"];
