// The TypeScript worker and client against a real `duraflow serve` and a Rust engine.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { ActivityError, Client, DuraflowError, Worker, WorkflowFailed } from "../dist/index.js";
import { DEADLINE, startStack, until } from "./stack.mjs";

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const call = (activity, input = null, options = {}) => ({ activity, queue: "typescript", input, ...options });

function worker(options = {}) {
  return new Worker({ url: stack.url, token: stack.token, queue: "typescript", waitMs: 500, ...options });
}

test("activities return results to the Rust workflow", async () => {
  const w = worker()
    .activity("double", async (_ctx, n) => n * 2)
    .activity("info", (ctx, s) => ({ s: s.toUpperCase(), attempt: ctx.attempt, instance: ctx.info.instanceId }));
  const running = w.run();
  const client = new Client(stack.url, stack.token);
  const a = await client.start("call", call("double", 21));
  const b = await client.start("call", call("info", "hi"), { id: "info-1" });
  assert.equal(await client.wait(a, { timeoutMs: DEADLINE }), 42);
  assert.deepEqual(await client.wait(b, { timeoutMs: DEADLINE }), { s: "HI", attempt: 1, instance: "info-1" });
  assert.equal((await client.status(b)).status, "completed");
  w.stop();
  await running;
});

test("errors follow the workflow's retry policy", async () => {
  const w = worker()
    .activity("flaky", async (ctx) => {
      if (ctx.attempt === 1) {
        ctx.heartbeat({ done: 3 });
        throw new TypeError("the bank timed out");
      }
      return { resumedFrom: ctx.heartbeatDetails, attempt: ctx.attempt, last: ctx.info.lastFailure?.code };
    })
    .activity("declined", async () => {
      throw new ActivityError("card declined", { type: "Declined", retryable: false });
    });
  const running = w.run();
  const client = new Client(stack.url, stack.token);
  const flaky = await client.start("call", call("flaky"));
  const declined = await client.start("call", call("declined"));
  assert.deepEqual(await client.wait(flaky, { timeoutMs: DEADLINE }), { resumedFrom: { done: 3 }, attempt: 2, last: "TypeError" });
  await assert.rejects(client.wait(declined, { timeoutMs: DEADLINE }), (e) => {
    assert.ok(e instanceof WorkflowFailed);
    assert.equal(e.failure.code, "Declined");
    assert.match(e.failure.message, /card declined/);
    return true;
  });
  w.stop();
  await running;
});

test("the concurrency limit holds", async () => {
  let now = 0;
  let most = 0;
  const w = worker({ concurrency: 2 }).activity("busy", async (_ctx, i) => {
    now += 1;
    most = Math.max(most, now);
    await new Promise((r) => setTimeout(r, 100));
    now -= 1;
    return i;
  });
  const running = w.run();
  const client = new Client(stack.url, stack.token);
  const run = await client.start("many", { activity: "busy", queue: "typescript", input: 6 });
  assert.equal(await client.wait(run, { timeoutMs: DEADLINE }), 6);
  assert.equal(most, 2);
  w.stop();
  await running;
});

test("the client raises events and completes callbacks", async () => {
  const tokens = [];
  const w = worker().activity("notify", (_ctx, token) => {
    tokens.push(token);
    return null;
  });
  const running = w.run();
  const client = new Client(stack.url, stack.token);
  const run = await client.start("approval", "typescript", { id: "approval-ts" });
  assert.equal(await client.start("approval", "typescript", { id: "approval-ts" }), run);
  await client.raiseEvent(run, "approve", { by: "ada" });
  const token = await until("the callback's token", () => tokens[0]);
  await client.completeCallback(token, "shipped");
  assert.deepEqual(await client.wait(run, { timeoutMs: DEADLINE }), { approved: { by: "ada" }, reply: "shipped" });
  await assert.rejects(client.start("no-such-workflow"), (e) => e instanceof DuraflowError && e.status === 404 && e.code === "workflow_not_found");
  await assert.rejects(new Client(stack.url, "wrong").status(run), (e) => e instanceof DuraflowError && e.status === 401);
  w.stop();
  await running;
});

test("a stop lets running work finish, then hands back what does not", async () => {
  const client = new Client(stack.url, stack.token);
  // Finishes within the grace period.
  let release;
  const gate = new Promise((r) => (release = r));
  const started = [];
  const patient = worker({ shutdownGraceMs: 30_000 }).activity("gated", async (ctx, v) => {
    started.push(ctx.attempt);
    await gate;
    return v;
  });
  let running = patient.run();
  const first = await client.start("call", call("gated", "one"));
  await until("the activity to start", () => started[0]);
  patient.stop();
  release();
  await running;
  assert.equal(await client.wait(first, { timeoutMs: DEADLINE }), "one");

  // Does not finish within the grace period: handed back, taken by the next worker as the
  // same attempt.
  const hung = worker({ shutdownGraceMs: 50 }).activity("stuck", async (ctx) => {
    started.push(ctx.attempt);
    await new Promise((r) => ctx.signal.addEventListener("abort", r));
    return "never reported";
  });
  running = hung.run();
  const second = await client.start("call", call("stuck", "two"));
  await until("the stuck activity to start", () => started[1]);
  hung.stop();
  await running;
  const next = worker().activity("stuck", async (ctx, v) => ({ v, attempt: ctx.attempt }));
  running = next.run();
  assert.deepEqual(await client.wait(second, { timeoutMs: DEADLINE }), { v: "two", attempt: 1 });
  next.stop();
  await running;
});

/** A server that takes requests and never answers them; `claims` counts the claims it got. */
async function silentServer() {
  const server = createServer((req) => {
    if (req.url.endsWith("/claim")) silent.claims += 1;
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const silent = {
    url: `http://127.0.0.1:${server.address().port}`,
    claims: 0,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
  return silent;
}

test("a request to a server that does not answer fails after its timeout", { timeout: DEADLINE }, async () => {
  const silent = await silentServer();
  try {
    const client = new Client(silent.url, undefined, { timeoutMs: 200 });
    await assert.rejects(client.status("anything"), { name: "TimeoutError" });
  } finally {
    await silent.close();
  }
});

test("a worker whose server stops answering still stops", { timeout: DEADLINE }, async () => {
  const silent = await silentServer();
  try {
    const w = new Worker({ url: silent.url, queue: "typescript", waitMs: 100, requestTimeoutMs: 200 }).activity(
      "never",
      () => null,
    );
    const warn = console.warn;
    console.warn = () => {};
    try {
      const running = w.run();
      // A second claim means the first one timed out and was retried.
      await until("a second claim", () => (silent.claims >= 2 ? true : undefined));
      w.stop();
      await running;
    } finally {
      console.warn = warn;
    }
  } finally {
    await silent.close();
  }
});
