// Who is signed in: the access token lives in memory only; the refresh token is the HttpOnly
// cookie the API sets, so a reload signs back in with `POST /auth/refresh` (ACCOUNTS.md).

import { createChronicleClient, type Problem } from "@chronicle/client";

let accessToken: string | undefined;
let email: string | undefined;
let accountId: string | undefined;
let refreshing: Promise<boolean> | undefined;
const listeners = new Set<() => void>();

/** The client every view uses: same origin, this session's token, read-your-writes. */
export const client = createChronicleClient({ getToken: () => accessToken });

/** The access token, if signed in. */
export function token(): string | undefined {
  return accessToken;
}

/** The signed-in account's id: each account has its own outbox on a shared device. */
export function account(): string | undefined {
  return accountId;
}

/** The signed-in address, if known. */
export function who(): string | undefined {
  return email;
}

/** Calls `listener` whenever the session starts or ends. */
export function onSessionChange(listener: () => void): void {
  listeners.add(listener);
}

function changed(): void {
  for (const listener of listeners) listener();
}

/** Signs in; answers the refusal, or `undefined` on success. */
export async function signIn(address: string, password: string): Promise<Problem | undefined> {
  const { data, error, response } = await client.api.POST("/api/v1/auth/login", { body: { email: address, password } });
  if (!data) {
    const problem = (error ?? {}) as Partial<Problem>;
    return { ...problem, type: problem.type ?? "about:blank", title: problem.title ?? "Sign-in failed", status: response.status };
  }
  accessToken = data.access_token;
  accountId = data.account_id;
  email = address;
  client.consistency.observe(data.consistency_token);
  changed();
  return undefined;
}

/**
 * Gets a new access token with the refresh cookie. One refresh at a time: two at once would
 * spend the same cookie twice, which the API answers with `refresh-raced`.
 */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    try {
      const { data } = await client.api.POST("/api/v1/auth/refresh", { body: {} });
      if (!data) {
        if (accessToken !== undefined) {
          accessToken = undefined;
          changed();
        }
        return false;
      }
      accessToken = data.access_token;
      accountId = data.account_id;
      changed();
      return true;
    } catch {
      return false;
    } finally {
      refreshing = undefined;
    }
  })();
  return refreshing;
}

/** Signs out here and on the server (the session's tokens stop working). */
export async function signOut(): Promise<void> {
  try {
    await client.api.POST("/api/v1/auth/logout", { body: {} });
  } finally {
    accessToken = undefined;
    accountId = undefined;
    email = undefined;
    changed();
  }
}
