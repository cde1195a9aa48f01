"""The SDK benchmark: a no-op activity run by a Python worker and by a TypeScript worker
through `duraflow serve`, beside the same activity run by the Rust engine itself.

    cargo build --release -p duraflow-cli --bin duraflow -p duraflow --example polyglot
    (cd sdks/typescript && npm ci && npm run build)
    python3 sdks/bench.py [--n 2000] [--seq 200] [--concurrency 100]

For each of rust, python and typescript it runs, on one SQLite file (or the store `--db`
names):
- latency: the `latency` workflow of the `polyglot` example, `--seq` activities one after
  the other; each sample is the workflow's time from scheduling an activity to the turn that
  received its result (so it includes the engine noticing the result);
- throughput: the `many` workflow, `--n` activities at once, timed from the start request to
  the workflow's result.

Binaries come from DURAFLOW_BIN and DURAFLOW_POLYGLOT_BIN, else target/release. Prints a
Markdown table."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sdks" / "python"))

from duraflow import Client  # noqa: E402

TOKEN = "bench-token"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))

PYTHON_WORKER = """
import sys
sys.path.insert(0, {path!r})
from duraflow import Worker
worker = Worker({url!r}, {token!r}, queue="python", concurrency={concurrency}, wait_ms=5000)
@worker.activity("noop")
async def noop(ctx, value):
    return value
worker.run_until_signal()
"""

TS_WORKER = """
import {{ Worker }} from {path!r};
const worker = new Worker({{ url: {url!r}, token: {token!r}, queue: "typescript", concurrency: {concurrency} }});
worker.activity("noop", async (_ctx, value) => value);
await worker.runUntilSignal();
"""


def spawn(args: List[str], env: dict, ready: str) -> Tuple[subprocess.Popen, str]:
    process = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    while True:
        line = process.stderr.readline()
        if not line:
            raise SystemExit(f"{args[0]} exited before printing {ready!r}")
        if ready in line:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, line


def percentile(samples: List[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="activities at once (throughput)")
    parser.add_argument("--seq", type=int, default=200, help="activities one by one (latency)")
    parser.add_argument("--concurrency", type=int, default=100, help="each worker's limit")
    parser.add_argument("--claim-poll-ms", type=int, default=50, help="the server's --claim-poll-ms")
    parser.add_argument("--db", help="the store's URL (default: a new SQLite file); use an empty PostgreSQL database")
    args = parser.parse_args()
    server_bin = os.environ.get("DURAFLOW_BIN", str(TARGET / "release" / "duraflow"))
    engine_bin = os.environ.get("DURAFLOW_POLYGLOT_BIN", str(TARGET / "release" / "examples" / "polyglot"))
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:{Path(tmp) / 'bench.db'}"
        env = dict(os.environ, DURAFLOW_DATABASE_URL=db, RUST_LOG="warn")
        engine, _ = spawn([engine_bin], env, "polyglot engine ready")
        env.pop("DURAFLOW_DATABASE_URL")
        server, line = spawn([server_bin, "--db", db, "serve", "--listen", "127.0.0.1:0", "--token", TOKEN,
                                     "--claim-poll-ms", str(args.claim_poll_ms)],
                             env, "listening on http://")
        url = "http://" + line.split("listening on http://")[1].split()[0]
        fill = dict(url=url, token=TOKEN, concurrency=args.concurrency)
        workers = [
            subprocess.Popen([sys.executable, "-c", PYTHON_WORKER.format(path=str(ROOT / "sdks" / "python"), **fill)]),
            subprocess.Popen(["node", "--input-type=module", "-e",
                              TS_WORKER.format(path=str(ROOT / "sdks" / "typescript" / "dist" / "index.js"), **fill)]),
        ]
        client = Client(url, TOKEN)
        rows = []
        try:
            for who, queue in (("rust (in the engine)", "default"), ("python", "python"), ("typescript", "typescript")):
                # A warm-up, which also waits for the worker to be claiming.
                client.wait(client.start("latency", {"activity": "noop", "queue": queue, "n": 5}), timeout=60)
                samples = client.wait(client.start("latency", {"activity": "noop", "queue": queue, "n": args.seq}),
                                      timeout=600, poll=0.01)
                began = time.monotonic()
                run = client.start("many", {"activity": "noop", "queue": queue, "input": args.n})
                assert client.wait(run, timeout=600, poll=0.01) == args.n
                elapsed = time.monotonic() - began
                rows.append((who, args.n / elapsed, statistics.median(samples), percentile(samples, 99)))
        finally:
            for w in workers:
                w.terminate()
            server.kill()
            assert engine.stdin is not None
            engine.stdin.close()
            engine.wait(timeout=30)
            for w in workers:
                w.wait(timeout=30)
    print(f"| who runs the no-op activity | tasks/s ({args.n} at once) | latency p50 (ms) | latency p99 (ms) |")
    print("|---|---:|---:|---:|")
    for who, rate, p50, p99 in rows:
        print(f"| {who} | {rate:,.0f} | {p50:.0f} | {p99:.0f} |")


if __name__ == "__main__":
    main()
