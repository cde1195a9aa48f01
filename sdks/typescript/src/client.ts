/** The client: start workflows, raise events, read status, wait for results, and resolve
 * callbacks, through `duraflow serve`. */

import { Http } from "./http.js";

const FINISHED = ["completed", "failed", "cancelled", "terminated"];

/** The longest the server is asked to hold one request of {@link Client.wait}, in
 * milliseconds (it allows up to 60000). */
export const LONG_POLL_MS = 25_000;

/** An instance as `GET /v1/instances/{id}` describes it. */
export interface InstanceStatus {
  id: string;
  name: string;
  status: "pending" | "running" | "completed" | "failed" | "cancelled" | "terminated";
  output?: unknown;
  failure?: { kind: string; message: string; code?: string | null } | null;
  [field: string]: unknown;
}

/** The instance did not complete: its status and failure. */
export class WorkflowFailed extends Error {
  constructor(
    readonly instanceId: string,
    readonly status: string,
    readonly failure: InstanceStatus["failure"],
  ) {
    super(`instance ${instanceId} ${status}: ${failure?.message ?? ""}`);
    this.name = "WorkflowFailed";
  }
}

/** Options of {@link Client.start}. */
export interface StartOptions {
  /** The instance id (default: a new UUID). An existing id returns that instance. */
  id?: string;
  /** The queue (default "default"). */
  queue?: string;
}

const part = encodeURIComponent;

/** A client of `duraflow serve` at `url` (such as `http://127.0.0.1:8080`). Each request
 * fails with a `TimeoutError` after `options.timeoutMs` (default 30000) without an answer. */
export class Client {
  private readonly http: Http;

  constructor(url: string, token?: string, options: { timeoutMs?: number } = {}) {
    this.http = new Http(url, token, options.timeoutMs);
  }

  /** Starts `workflow` with `input`; its instance id. */
  async start(workflow: string, input: unknown = null, options: StartOptions = {}): Promise<string> {
    const body: Record<string, unknown> = { workflow, input };
    if (options.id !== undefined) body.id = options.id;
    if (options.queue !== undefined) body.queue = options.queue;
    const started = await this.http.request<{ id: string }>("POST", "/v1/instances", body);
    return started.id;
  }

  /** Raises the event `name` with `data` on an instance. */
  async raiseEvent(instanceId: string, name: string, data: unknown = null): Promise<void> {
    await this.http.request("POST", `/v1/instances/${part(instanceId)}/events/${part(name)}`, data);
  }

  /** The instance: status, output or failure, and more. */
  status(instanceId: string): Promise<InstanceStatus> {
    return this.http.request<InstanceStatus>("GET", `/v1/instances/${part(instanceId)}`);
  }

  /** Waits for the instance to finish: its output, or a rejection with `WorkflowFailed`; an
   * `Error` after `options.timeoutMs` (default 60000). The server holds each request until
   * the instance finishes, for up to {@link LONG_POLL_MS} (`GET /v1/instances/{id}?wait_ms=`),
   * so the answer comes as soon as it has finished. `options.pollMs` is no longer used (this
   * method polled every `pollMs` before); it is still accepted. */
  async wait<T = unknown>(instanceId: string, options: { timeoutMs?: number; pollMs?: number } = {}): Promise<T> {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    const path = `/v1/instances/${part(instanceId)}`;
    for (;;) {
      const waitMs = Math.min(LONG_POLL_MS, Math.max(0, deadline - Date.now()));
      const info = await this.http.request<InstanceStatus>(
        "GET",
        `${path}?wait_ms=${waitMs}`,
        undefined,
        this.http.timeoutMs + waitMs,
      );
      if (FINISHED.includes(info.status)) {
        if (info.status === "completed") return info.output as T;
        throw new WorkflowFailed(instanceId, info.status, info.failure);
      }
      if (Date.now() >= deadline) throw new Error(`instance ${instanceId} did not finish in time`);
    }
  }

  /** Completes the callback with `token`: the waiting workflow receives `value`. */
  async completeCallback(token: string, value: unknown = null): Promise<void> {
    await this.http.request("POST", `/v1/callbacks/${part(token)}/complete`, { value });
  }

  /** Fails the callback with `token` with an error type and message. */
  async failCallback(token: string, type: string, message: string): Promise<void> {
    await this.http.request("POST", `/v1/callbacks/${part(token)}/fail`, { type, message });
  }
}
