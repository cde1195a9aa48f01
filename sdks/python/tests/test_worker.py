"""The Python worker and client against a real `duraflow serve` and a Rust engine."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import DEADLINE, Stack, until
from duraflow import ActivityContext, ActivityError, Client, DuraflowError, Worker, WorkflowFailed

HERE = Path(__file__).resolve().parent


class Running:
    """A worker running in a thread of its own until `stop()`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: List[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(worker.run())
            except BaseException as e:  # noqa: BLE001 - reported by stop()
                self.error.append(e)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        until("the worker to start", lambda: True if worker._loop is not None else None)

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert not self.error, self.error


def call(activity: str, input: Any = None, **options: Any) -> Dict[str, Any]:
    return dict(activity=activity, queue="python", input=input, **options)


def test_async_and_sync_activities_return_results(stack: Stack) -> None:
    worker = Worker(stack.url, stack.token, queue="python", wait_ms=500)

    @worker.activity("double")
    async def double(ctx: ActivityContext, n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @worker.activity("upper")
    def upper(ctx: ActivityContext, s: str) -> Dict[str, Any]:
        return {"s": s.upper(), "attempt": ctx.attempt, "instance": ctx.info.instance_id}

    running = Running(worker)
    client = Client(stack.url, stack.token)
    a = client.start("call", call("double", 21))
    b = client.start("call", call("upper", "hi"), id="upper-1")
    assert client.wait(a, timeout=DEADLINE) == 42
    assert client.wait(b, timeout=DEADLINE) == {"s": "HI", "attempt": 1, "instance": "upper-1"}
    assert client.status(b)["status"] == "completed"
    running.stop()


def test_errors_follow_the_retry_policy(stack: Stack) -> None:
    worker = Worker(stack.url, stack.token, queue="python", wait_ms=500)

    @worker.activity("flaky")
    async def flaky(ctx: ActivityContext, _: Any) -> Any:
        if ctx.attempt == 1:
            ctx.heartbeat({"done": 3})
            raise RuntimeError("the bank timed out")
        return {"resumed_from": ctx.heartbeat_details, "attempt": ctx.attempt}

    @worker.activity("declined")
    def declined(ctx: ActivityContext, _: Any) -> Any:
        raise ActivityError("card declined", type="Declined", retryable=False)

    running = Running(worker)
    client = Client(stack.url, stack.token)
    flaky_id = client.start("call", call("flaky"))
    declined_id = client.start("call", call("declined"))
    assert client.wait(flaky_id, timeout=DEADLINE) == {"resumed_from": {"done": 3}, "attempt": 2}
    with pytest.raises(WorkflowFailed) as failed:
        client.wait(declined_id, timeout=DEADLINE)
    assert failed.value.status == "failed"
    assert failed.value.failure is not None
    assert failed.value.failure["code"] == "Declined"
    assert "card declined" in failed.value.failure["message"]
    running.stop()


def test_the_concurrency_limit_holds(stack: Stack) -> None:
    worker = Worker(stack.url, stack.token, queue="python", wait_ms=500, concurrency=2)
    lock = threading.Lock()
    now = {"running": 0, "most": 0}

    @worker.activity("busy")
    def busy(ctx: ActivityContext, i: int) -> int:
        with lock:
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
        time.sleep(0.1)
        with lock:
            now["running"] -= 1
        return i

    running = Running(worker)
    client = Client(stack.url, stack.token)
    run = client.start("many", {"activity": "busy", "queue": "python", "input": 6})
    assert client.wait(run, timeout=DEADLINE) == 6
    assert now["most"] == 2
    running.stop()


def test_the_client_raises_events_and_completes_callbacks(stack: Stack) -> None:
    worker = Worker(stack.url, stack.token, queue="python", wait_ms=500)
    tokens: List[str] = []

    @worker.activity("notify")
    def notify(ctx: ActivityContext, token: str) -> None:
        tokens.append(token)

    running = Running(worker)
    client = Client(stack.url, stack.token)
    run = client.start("approval", "python", id="approval-1")
    assert client.start("approval", "python", id="approval-1") == run
    client.raise_event(run, "approve", {"by": "ada"})
    until("the callback's token", lambda: tokens[0] if tokens else None)
    client.complete_callback(tokens[0], "shipped")
    assert client.wait(run, timeout=DEADLINE) == {"approved": {"by": "ada"}, "reply": "shipped"}
    with pytest.raises(DuraflowError) as closed:
        client.complete_callback(tokens[0], "again")
    assert closed.value.code in ("callback_not_found", "callback_closed")
    with pytest.raises(DuraflowError) as unknown:
        client.start("no-such-workflow")
    assert (unknown.value.status, unknown.value.code) == (404, "workflow_not_found")
    with pytest.raises(DuraflowError) as unauthorized:
        Client(stack.url, "wrong").status(run)
    assert unauthorized.value.status == 401
    running.stop()


def worker_process(stack: Stack, marks: Path, grace: float) -> "subprocess.Popen[str]":
    process = subprocess.Popen(
        [sys.executable, str(HERE / "worker_proc.py"), stack.url, stack.token, str(marks), str(grace)],
        stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    assert "worker ready" in process.stderr.readline()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(f"[worker {process.pid}] {line}")

    threading.Thread(target=pump, daemon=True).start()
    return process


def started(marks: Path, pid: int) -> Dict[str, Any]:
    path = marks / f"started-{pid}"
    return until(f"worker {pid} to start its task", lambda: json.loads(path.read_text()) if path.exists() else None)


def test_sigterm_lets_running_work_finish(stack: Stack, tmp_path: Path) -> None:
    client = Client(stack.url, stack.token)
    run = client.start("call", call("slow", "v"))
    worker = worker_process(stack, tmp_path, grace=30)
    started(tmp_path, worker.pid)
    worker.send_signal(signal.SIGTERM)
    (tmp_path / "go").write_text("")
    assert worker.wait(timeout=DEADLINE) == 0
    assert client.wait(run, timeout=DEADLINE) == {"value": "v", "attempt": 1, "pid": worker.pid}


def test_sigterm_hands_back_what_does_not_finish_in_time(stack: Stack, tmp_path: Path) -> None:
    client = Client(stack.url, stack.token)
    run = client.start("call", call("slow", "v"))
    first = worker_process(stack, tmp_path, grace=0.1)
    started(tmp_path, first.pid)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=DEADLINE) == 0
    # Handed back, the task is taken at once by the next worker, as the same attempt.
    second = worker_process(stack, tmp_path, grace=30)
    assert started(tmp_path, second.pid)["attempt"] == 1
    (tmp_path / "go").write_text("")
    assert client.wait(run, timeout=DEADLINE) == {"value": "v", "attempt": 1, "pid": second.pid}
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=DEADLINE) == 0


def test_a_worker_killed_mid_task_loses_it_to_the_next(stack: Stack, tmp_path: Path) -> None:
    client = Client(stack.url, stack.token)
    run = client.start("call", call("slow", "v", heartbeat_timeout_ms=1000))
    dead = worker_process(stack, tmp_path, grace=30)
    lost = started(tmp_path, dead.pid)
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=DEADLINE)
    # After the heartbeat timeout the task is claimed again.
    alive = worker_process(stack, tmp_path, grace=30)
    again = started(tmp_path, alive.pid)
    assert again["attempt"] == 2 and again["token"] != lost["token"]
    # The dead worker's lease cannot complete the task any more.
    late = urllib.request.Request(
        f"{stack.url}/v1/tasks/{lost['task']}/complete",
        data=json.dumps({"token": lost["token"], "output": "late"}).encode(),
        headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(late)
    assert refused.value.code == 409
    assert json.loads(refused.value.read())["error"]["code"] == "lease_lost"
    (tmp_path / "go").write_text("")
    assert client.wait(run, timeout=DEADLINE) == {"value": "v", "attempt": 2, "pid": alive.pid}
    # The result was recorded once.
    history = Client(stack.url, stack.token)._http.request("GET", f"/v1/instances/{run}/history")
    completed = [e for e in history["events"] if e["type"] == "activity_completed"]
    assert len(completed) == 1, history
    alive.send_signal(signal.SIGTERM)
    assert alive.wait(timeout=DEADLINE) == 0
