"""A worker process for the shutdown tests: serves the sync activity `slow` on queue
`python`, which records that it started (with its lease token) in MARKS and returns once the
file MARKS/go exists.

    python worker_proc.py URL TOKEN MARKS GRACE_SECONDS
"""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duraflow import ActivityContext, Worker  # noqa: E402

url, token, marks, grace = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
worker = Worker(url, token, queue="python", lease_ms=1500, shutdown_grace=grace, wait_ms=1000)


@worker.activity("slow")
def slow(ctx: ActivityContext, value: object) -> object:
    started = {"attempt": ctx.attempt, "token": ctx.info.token, "task": ctx.info.id, "pid": os.getpid()}
    partial = marks / f"partial-{os.getpid()}"
    partial.write_text(json.dumps(started))
    partial.rename(marks / f"started-{os.getpid()}")
    while not (marks / "go").exists() and not ctx.cancelled:
        time.sleep(0.02)
    return {"value": value, "attempt": ctx.attempt, "pid": os.getpid()}


print("worker ready", file=sys.stderr, flush=True)
worker.run_until_signal()
print("worker stopped", file=sys.stderr, flush=True)
