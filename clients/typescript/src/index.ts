// Chronicle's TypeScript client: generated types, a typed fetch client and the offline outbox.

export type { paths, components, operations } from "./schema";
export * from "./client.ts";
export * from "./problem.ts";
export * from "./outbox.ts";
