/**
 * The worker: runs activities of duraflow workflows in Node, over the worker protocol of
 * `duraflow serve`.
 *
 * ```ts
 * const worker = new Worker({ url: "http://127.0.0.1:8080", token, queue: "typescript" });
 * worker.activity("shout", async (ctx, text: string) => text.toUpperCase());
 * await worker.runUntilSignal(); // SIGTERM/SIGINT: finish what runs, or hand it back
 * ```
 */

import { hostname } from "node:os";

import { DEFAULT_TIMEOUT_MS, DuraflowError, Http } from "./http.js";

/** A task as a claim returns it. */
interface Task {
  id: number;
  token: string;
  name: string;
  instance_id: string;
  execution: number;
  op: string;
  attempt: number;
  max_attempts: number;
  input: unknown;
  heartbeat_details: unknown;
  last_failure: Record<string, unknown> | null;
  lease_ms: number;
  deadline: number | null;
}

/** What the worker knows about the attempt it runs. */
export interface TaskInfo {
  id: number;
  token: string;
  name: string;
  instanceId: string;
  execution: number;
  op: string;
  attempt: number;
  maxAttempts: number;
  leaseMs: number;
  /** When the attempt times out (ms since the epoch), if it has a deadline. */
  deadline: number | null;
  lastFailure: Record<string, unknown> | null;
}

/** Throw from an activity to fail its attempt with an error `type` (the failure's code),
 * retryable or not, optionally asking for the next attempt after `retryAfterMs`. Any other
 * error fails the attempt as retryable, with its name as the type. */
export class ActivityError extends Error {
  readonly type?: string;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;

  constructor(message: string, options: { type?: string; retryable?: boolean; retryAfterMs?: number } = {}) {
    super(message);
    this.name = "ActivityError";
    this.type = options.type;
    this.retryable = options.retryable ?? true;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** What an activity sees: its task, the details an earlier attempt left, heartbeats, and
 * whether it should stop. */
export class ActivityContext {
  readonly info: TaskInfo;
  /** Aborted when the activity should stop: its instance finished or was cancelled, its
   * attempt timed out, its lease was lost, or the worker hands it back at shutdown. */
  readonly signal: AbortSignal;
  private readonly earlier: unknown;
  /** @internal */
  details: { value: unknown } | undefined;
  /** @internal */
  readonly abort = new AbortController();

  /** @internal */
  constructor(task: Task) {
    this.info = {
      id: task.id,
      token: String(task.token),
      name: task.name,
      instanceId: task.instance_id,
      execution: task.execution,
      op: task.op,
      attempt: task.attempt,
      maxAttempts: task.max_attempts,
      leaseMs: task.lease_ms,
      deadline: task.deadline,
      lastFailure: task.last_failure,
    };
    this.earlier = task.heartbeat_details;
    this.signal = this.abort.signal;
  }

  /** Which attempt this is (1 for the first). */
  get attempt(): number {
    return this.info.attempt;
  }

  /** The details of the latest heartbeat of an earlier attempt (null if none). */
  get heartbeatDetails(): unknown {
    return this.earlier ?? null;
  }

  /** Whether the activity should stop (see {@link ActivityContext.signal}). */
  get cancelled(): boolean {
    return this.signal.aborted;
  }

  /** Records progress (any JSON value); the worker sends the latest with its next heartbeat,
   * and the next attempt reads it as `heartbeatDetails`. Returns at once. The worker
   * heartbeats on its own too, so this is only needed for details. */
  heartbeat(details: unknown = null): void {
    this.details = { value: details };
  }
}

/** An activity: async (or not), taking the context and the input. */
export type Activity<I = any, O = unknown> = (ctx: ActivityContext, input: I) => O | Promise<O>;

/** How a {@link Worker} runs. */
export interface WorkerOptions {
  /** The server, such as `http://127.0.0.1:8080`. */
  url: string;
  /** The server's bearer token, if it has one. */
  token?: string;
  /** The queue whose tasks it runs (default "default"). */
  queue?: string;
  /** Activities at most running at once (default 10). */
  concurrency?: number;
  /** The lease of each task, which heartbeats extend (default 30000). */
  leaseMs?: number;
  /** How long a claim waits for a task (default 5000); also the longest a stop waits for the
   * claim in flight. */
  waitMs?: number;
  /** How long a stop lets running activities finish before handing them back (default
   * 10000). */
  shutdownGraceMs?: number;
  /** The worker's name, for diagnostics (default `node-HOST-PID`). */
  name?: string;
  /** How long a request to the server may take before it fails and is retried (default
   * 30000; a claim may take `waitMs` more). A server that stops answering then delays the
   * worker, and its stop, by this long at most. */
  requestTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Claims tasks of its activities on a queue and runs them, at most `concurrency` at once. */
export class Worker {
  private readonly http: Http;
  private readonly activities = new Map<string, Activity>();
  private readonly options: Required<Omit<WorkerOptions, "token">>;
  private stopping = false;
  private wake: () => void = () => {};
  private readonly running = new Map<Promise<void>, ActivityContext>();
  private handingBack = false;

  constructor(options: WorkerOptions) {
    const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.http = new Http(options.url, options.token, requestTimeoutMs);
    this.options = {
      url: options.url,
      queue: options.queue ?? "default",
      concurrency: options.concurrency ?? 10,
      leaseMs: options.leaseMs ?? 30_000,
      waitMs: options.waitMs ?? 5_000,
      shutdownGraceMs: options.shutdownGraceMs ?? 10_000,
      name: options.name ?? `node-${hostname()}-${process.pid}`,
      requestTimeoutMs,
    };
    if (this.options.concurrency < 1) throw new RangeError("concurrency must be at least 1");
  }

  /** Registers `fn` as the activity `name`. */
  activity<I = any, O = unknown>(name: string, fn: Activity<I, O>): this {
    this.activities.set(name, fn as Activity);
    return this;
  }

  /** Asks the worker to stop: it claims nothing more, lets running activities finish for
   * `shutdownGraceMs`, then hands the rest back. */
  stop(): void {
    this.stopping = true;
    this.wake();
  }

  /** Runs until SIGTERM or SIGINT, then stops gracefully. */
  async runUntilSignal(): Promise<void> {
    const stop = () => this.stop();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    try {
      await this.run();
    } finally {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
    }
  }

  /** Runs until {@link Worker.stop}. */
  async run(): Promise<void> {
    if (this.activities.size === 0) throw new Error('register at least one activity with worker.activity(name, fn)');
    let backoff = 100;
    while (!this.stopping) {
      if (this.running.size >= this.options.concurrency) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      let tasks: Task[];
      try {
        tasks = await this.claim(this.options.concurrency - this.running.size);
        backoff = 100;
      } catch (e) {
        if (e instanceof DuraflowError && [400, 401, 404, 413, 415].includes(e.status)) throw e;
        console.warn(`duraflow: claiming failed (${e}); retrying in ${backoff}ms`);
        await Promise.race([sleep(backoff), new Promise<void>((resolve) => (this.wake = resolve))]);
        backoff = Math.min(backoff * 2, 5_000);
        continue;
      }
      for (const task of tasks) {
        if (this.stopping) {
          // Stopped while the claim waited: what it brought is handed back.
          await this.report(task, "release", {});
          continue;
        }
        const ctx = new ActivityContext(task);
        const run: Promise<void> = this.runTask(task, ctx).finally(() => {
          this.running.delete(run);
          this.wake();
        });
        this.running.set(run, ctx);
      }
    }
    await this.drain();
  }

  private async drain(): Promise<void> {
    if (this.running.size === 0) return;
    const all = Promise.all(this.running.keys());
    const late = await Promise.race([all.then(() => false), sleep(this.options.shutdownGraceMs).then(() => true)]);
    if (late) {
      this.handingBack = true;
      for (const ctx of this.running.values()) ctx.abort.abort(new Error("the worker is shutting down"));
      await all;
    }
  }

  private async claim(room: number): Promise<Task[]> {
    // A claim is held open by the server for up to `waitMs`: its deadline comes on top.
    const answer = await this.http.request<{ tasks: Task[] }>(
      "POST",
      `/v1/workers/${encodeURIComponent(this.options.queue)}/claim`,
      {
        worker: this.options.name,
        activities: [...this.activities.keys()].sort(),
        max: Math.min(room, 100),
        wait_ms: this.options.waitMs,
        lease_ms: this.options.leaseMs,
      },
      this.options.waitMs + this.options.requestTimeoutMs,
    );
    return answer.tasks;
  }

  private async runTask(task: Task, ctx: ActivityContext): Promise<void> {
    const fn = this.activities.get(task.name);
    if (!fn) {
      await this.report(task, "fail", { message: `no activity ${JSON.stringify(task.name)} in this worker`, type: "UnknownActivity" });
      return;
    }
    const beats = this.heartbeats(ctx);
    // The activity's own promise, or the abort: a JavaScript function cannot be stopped, so an
    // aborted attempt is left to finish on its own and its result is ignored.
    const aborted = new Promise<"aborted">((resolve) => ctx.signal.addEventListener("abort", () => resolve("aborted"), { once: true }));
    let outcome: { output: unknown } | { error: unknown } | "aborted";
    try {
      outcome = await Promise.race([
        Promise.resolve()
          .then(() => fn(ctx, task.input))
          .then(
            (output) => ({ output }),
            (error) => ({ error }),
          ),
        aborted,
      ]);
    } finally {
      beats.stop();
    }
    if (outcome === "aborted" || ctx.cancelled) {
      if (this.handingBack) {
        await this.flush(ctx);
        await this.report(task, "release", {});
      }
      // Otherwise the server said to stop: nothing is reported.
      return;
    }
    if ("output" in outcome) {
      await this.report(task, "complete", { output: outcome.output ?? null });
      return;
    }
    const error = outcome.error;
    const body: Record<string, unknown> =
      error instanceof ActivityError
        ? { message: error.message, retryable: error.retryable, type: error.type, retry_after_ms: error.retryAfterMs }
        : { message: error instanceof Error ? error.message || String(error) : String(error), type: error instanceof Error ? error.name : "Error", retryable: true };
    await this.flush(ctx);
    await this.report(task, "fail", body);
  }

  /** Heartbeats every third of the lease until stopped; aborts the context when the server
   * says the attempt must stop. */
  private heartbeats(ctx: ActivityContext): { stop(): void } {
    const interval = Math.max(ctx.info.leaseMs / 3, 50);
    const timer = setInterval(async () => {
      const body: Record<string, unknown> = { token: ctx.info.token, lease_ms: ctx.info.leaseMs };
      if (ctx.details) body.details = ctx.details.value;
      let stop = false;
      try {
        const answer = await this.http.request<{ cancelled: boolean }>("POST", `/v1/tasks/${ctx.info.id}/heartbeat`, body);
        stop = answer.cancelled;
      } catch (e) {
        stop = e instanceof DuraflowError && (e.status === 404 || e.status === 409);
      }
      if (stop && !ctx.cancelled) {
        clearInterval(timer);
        ctx.abort.abort(new Error("the server said the attempt must stop"));
      }
    }, interval);
    return { stop: () => clearInterval(timer) };
  }

  /** Sends the latest details before the attempt gives its task back. */
  private async flush(ctx: ActivityContext): Promise<void> {
    if (!ctx.details) return;
    try {
      await this.http.request("POST", `/v1/tasks/${ctx.info.id}/heartbeat`, { token: ctx.info.token, details: ctx.details.value });
    } catch {
      // The report that follows says what matters.
    }
  }

  /** Sends a report, retrying on connection errors and 503 while the lease may last. */
  private async report(task: Task, verb: "complete" | "fail" | "release", body: Record<string, unknown>): Promise<void> {
    const deadline = Date.now() + task.lease_ms;
    let delay = 50;
    for (;;) {
      try {
        await this.http.request("POST", `/v1/tasks/${task.id}/${verb}`, { ...body, token: String(task.token) });
        return;
      } catch (e) {
        if (e instanceof DuraflowError && e.status !== 503) {
          console.warn(`duraflow: task ${task.id}: ${verb} refused: ${e.message}`);
          return;
        }
        if (Date.now() + delay > deadline) {
          console.warn(`duraflow: task ${task.id}: giving up on ${verb}: ${e}`);
          return;
        }
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 2_000);
    }
  }
}
