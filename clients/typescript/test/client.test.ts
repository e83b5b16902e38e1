import { describe, expect, it } from "vitest";
import { createChronicleClient } from "../src/client.ts";

function recorder() {
  const seen: Request[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : new Request(input, init);
    seen.push(request);
    if (request.method === "PATCH") {
      return new Response(JSON.stringify({ id: "p", version: 2, consistency_token: "body-token" }), {
        status: 200,
        headers: { "content-type": "application/json", "x-consistency-token": "header-token" },
      });
    }
    return new Response(JSON.stringify({ items: [], total: 0, page: 1, page_size: 20, pages: 0 }), { status: 200, headers: { "content-type": "application/json" } });
  };
  return { seen, fetch };
}

describe("typed client", () => {
  it("authorises every request and makes reads wait for the client's own writes", async () => {
    const { seen, fetch } = recorder();
    let token: string | undefined;
    const { api, consistency } = createChronicleClient({ baseUrl: "http://chronicle.test", getToken: () => token, fetch });

    await api.GET("/api/v1/projects");
    token = "t1";
    await api.PATCH("/api/v1/projects/{id}", { params: { path: { id: "p" }, header: { "If-Match": '"1"', "Idempotency-Key": "k1" } }, body: { name: "n" } });
    await api.GET("/api/v1/projects");

    const [anonymous, command, read] = seen;
    expect(anonymous?.headers.get("authorization")).toBeNull();
    expect(anonymous?.headers.get("x-consistency-token")).toBeNull();
    expect(command?.headers.get("authorization")).toBe("Bearer t1");
    expect(command?.headers.get("if-match")).toBe('"1"');
    expect(command?.headers.get("x-consistency-token")).toBeNull();
    expect(consistency.latest).toBe("header-token");
    expect(read?.headers.get("x-consistency-token")).toBe("header-token");
    expect(read?.headers.get("authorization")).toBe("Bearer t1");
  });

  it("keeps the newest token an outbox replay reports", () => {
    const { consistency } = createChronicleClient();
    consistency.observe("a");
    consistency.observe(undefined);
    consistency.observe("b");
    expect(consistency.latest).toBe("b");
  });
});
