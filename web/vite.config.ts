// Vite serves the PWA and, on the same origin, both APIs: GET and HEAD under /api go to the
// query API, every other method to the command API, as the compose gateway does. Same origin
// means the refresh cookie (`__Host-`, SameSite=Strict) just works and CORS is not involved.

import { appendFileSync } from "node:fs";
import { request, type IncomingMessage, type ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { defineConfig, type Connect, type Plugin } from "vite";

const commandApi = new URL(process.env["CHRONICLE_COMMAND_URL"] ?? "http://127.0.0.1:8080");
const queryApi = new URL(process.env["CHRONICLE_QUERY_URL"] ?? "http://127.0.0.1:8081");
// One line per proxied request (method, path, Idempotency-Key, status): the e2e test reads it
// to prove each queued command crossed the wire once.
const proxyLog = process.env["CHRONICLE_PROXY_LOG"];

function forward(req: IncomingMessage, res: ServerResponse, next: Connect.NextFunction): void {
  if (!req.url?.startsWith("/api/")) return next();
  const target = req.method === "GET" || req.method === "HEAD" ? queryApi : commandApi;
  const upstream = request(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: target.host },
    },
    (answer) => {
      if (proxyLog) {
        const key = req.headers["idempotency-key"] ?? "-";
        appendFileSync(proxyLog, `${req.method} ${req.url} ${String(key)} ${answer.statusCode ?? 0}\n`);
      }
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (res.headersSent) return res.destroy();
    res.writeHead(502, { "content-type": "application/problem+json", "cache-control": "no-store" });
    res.end(JSON.stringify({ type: "/problems/unavailable", title: "API unreachable", status: 502 }));
  });
  req.pipe(upstream);
}

function chronicleProxy(): Plugin {
  return {
    name: "chronicle-api-proxy",
    configureServer(server) {
      server.middlewares.use(forward);
    },
    configurePreviewServer(server) {
      server.middlewares.use(forward);
    },
  };
}

export default defineConfig({
  plugins: [chronicleProxy()],
  resolve: {
    alias: { "@chronicle/client": fileURLToPath(new URL("../clients/typescript/src/index.ts", import.meta.url)) },
  },
  server: { port: 5173, strictPort: true, fs: { allow: [".."] } },
  preview: { port: 5173, strictPort: true },
  build: {
    target: "es2022",
    rollupOptions: {
      input: { main: "index.html", sw: "src/sw.ts" },
      // The service worker keeps a fixed name at the root so its scope is the whole app.
      output: { entryFileNames: (chunk) => (chunk.name === "sw" ? "sw.js" : "assets/[name]-[hash].js") },
    },
  },
});
