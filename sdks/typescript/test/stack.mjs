// A real stack for the tests: the Rust engine of the `polyglot` example (it runs the
// workflows) and `duraflow serve` (it serves the worker protocol), both on one SQLite file.
// The binaries come from DURAFLOW_BIN and DURAFLOW_POLYGLOT_BIN, or else from the Cargo
// target directory (`cargo build -p duraflow-cli -p duraflow --example polyglot`).

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const target = process.env.CARGO_TARGET_DIR ?? join(root, "target");
export const TOKEN = "ts-test-token";
export const DEADLINE = 30_000;

function binary(env, fallback) {
  const path = process.env[env] ?? fallback;
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: build it (cargo build -p duraflow-cli -p duraflow --example polyglot) or set ${env}`);
  }
  return path;
}

/** Starts a process and resolves with it and the stderr line containing `ready`. */
function start(args, env, ready) {
  const child = spawn(args[0], args.slice(1), { env, stdio: ["pipe", "ignore", "pipe"] });
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${args[0]} did not print ${ready} within ${DEADLINE}ms`));
    }, DEADLINE);
    createInterface({ input: child.stderr }).on("line", (line) => {
      process.stderr.write(`[${args[0].split("/").pop()}] ${line}\n`);
      if (line.includes(ready)) {
        clearTimeout(timer);
        resolveStart({ child, line });
      }
    });
    child.on("error", reject);
  });
}

/** Starts the engine and the server on a fresh SQLite file. */
export async function startStack() {
  const dir = mkdtempSync(join(tmpdir(), "duraflow-ts-"));
  const db = `sqlite:${join(dir, "runs.db")}`;
  const engine = await start(
    [binary("DURAFLOW_POLYGLOT_BIN", join(target, "debug", "examples", "polyglot"))],
    { ...process.env, DURAFLOW_DATABASE_URL: db, RUST_LOG: "warn" },
    "polyglot engine ready",
  );
  const env = { ...process.env };
  delete env.DURAFLOW_DATABASE_URL;
  const server = await start(
    [binary("DURAFLOW_BIN", join(target, "debug", "duraflow")), "--db", db, "serve", "--listen", "127.0.0.1:0", "--token", TOKEN, "--max-body", "65536"],
    env,
    "listening on http://",
  );
  const address = server.line.split("listening on http://")[1].split(/\s/)[0];
  return {
    url: `http://${address}`,
    token: TOKEN,
    async stop() {
      // Killed: a graceful stop would wait for the long polls of stopped workers.
      server.child.kill("SIGKILL");
      engine.child.stdin.end();
      await Promise.all([server.child, engine.child].map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once("exit", r)))));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns something other than undefined. */
export async function until(what, check) {
  const end = Date.now() + DEADLINE;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${DEADLINE}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
