/**
 * duraflow for Node: workers that run activities of duraflow workflows, and a client, both
 * talking to `duraflow serve` over HTTP/JSON (docs/WORKER_PROTOCOL.md).
 */

export { DuraflowError } from "./http.js";
export { Client, LONG_POLL_MS, WorkflowFailed } from "./client.js";
export type { InstanceStatus, StartOptions } from "./client.js";
export { ActivityContext, ActivityError, Worker } from "./worker.js";
export type { Activity, TaskInfo, WorkerOptions } from "./worker.js";
