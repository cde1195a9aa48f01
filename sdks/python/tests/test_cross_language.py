"""Rust workflow → Python activity → TypeScript activity → result: the `pipeline` workflow of
the `polyglot` example, with `greet` run by a Python worker in this process and `shout` by
the TypeScript SDK's example worker in a Node process.

Needs `node` and the TypeScript SDK built (`npm run build` in sdks/typescript); skipped
without them unless DURAFLOW_REQUIRE_E2E is set (scripts/test-sdks sets it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DEADLINE, Stack
from duraflow import ActivityContext, Client, Worker
from test_worker import Running

SHOUT = Path(__file__).resolve().parents[2] / "typescript" / "examples" / "shout.mjs"
BUILT = SHOUT.parents[1] / "dist" / "index.js"


def test_rust_python_typescript_pipeline(stack: Stack) -> None:
    node = shutil.which("node")
    if node is None or not BUILT.exists():
        if os.environ.get("DURAFLOW_REQUIRE_E2E"):
            pytest.fail("node and the built TypeScript SDK are required (npm run build in sdks/typescript)")
        pytest.skip("node or the built TypeScript SDK is missing")
    python = Worker(stack.url, stack.token, queue="python", wait_ms=500)

    @python.activity("greet")
    async def greet(ctx: ActivityContext, name: str) -> str:
        return f"Hello, {name}, from Python"

    running = Running(python)
    env = dict(os.environ, DURAFLOW_URL=stack.url, DURAFLOW_TOKEN=stack.token)
    typescript = subprocess.Popen([node, str(SHOUT)], env=env)
    try:
        client = Client(stack.url, stack.token)
        run = client.start("pipeline", "Ada", id="pipeline-1")
        assert client.wait(run, timeout=DEADLINE) == "HELLO, ADA, FROM PYTHON!"
        history = client._http.request("GET", f"/v1/instances/{run}/history")
        done = [
            (e["event"]["activity_scheduled"]["name"], e["event"]["activity_scheduled"]["options"]["queue"])
            for e in history["events"]
            if e["type"] == "activity_scheduled"
        ]
        assert done == [("greet", "python"), ("shout", "typescript")], history
    finally:
        typescript.terminate()
        assert typescript.wait(timeout=DEADLINE) == 0
        running.stop()
