// Serves the activity `shout` of the `polyglot` example's `pipeline` workflow, on queue
// `typescript` (build first: npm run build).
//
//     DURAFLOW_URL=http://127.0.0.1:8080 DURAFLOW_TOKEN=secret node examples/shout.mjs

import { Worker } from "../dist/index.js";

const worker = new Worker({
  url: process.env.DURAFLOW_URL ?? "http://127.0.0.1:8080",
  token: process.env.DURAFLOW_TOKEN,
  queue: "typescript",
});
worker.activity("shout", async (_ctx, text) => `${text.toUpperCase()}!`);
await worker.runUntilSignal();
