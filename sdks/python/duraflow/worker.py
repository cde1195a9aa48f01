"""The worker: runs activities of duraflow workflows in Python, over the worker protocol of
`duraflow serve` (docs/WORKER_PROTOCOL.md).

```python
worker = Worker("http://127.0.0.1:8080", token, queue="python")

@worker.activity("greet")
async def greet(ctx: ActivityContext, name: str) -> str:
    return f"Hello, {name}"

worker.run_until_signal()   # SIGTERM/SIGINT: finish what runs, or hand it back
```
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Set, TypeVar, Union
from urllib.parse import quote

from ._http import DuraflowError, Http

log = logging.getLogger("duraflow")

F = TypeVar("F", bound=Callable[..., Any])
ActivityFn = Callable[["ActivityContext", Any], Union[Any, Awaitable[Any]]]


class ActivityError(Exception):
    """Raise from an activity to fail its attempt with an error `type` (the failure's code),
    retryable or not, optionally asking for the next attempt after `retry_after` seconds.
    Any other exception fails the attempt as retryable, with its class name as the type."""

    def __init__(
        self,
        message: str,
        *,
        type: Optional[str] = None,
        retryable: bool = True,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class TaskInfo:
    """What the worker knows about the attempt it runs."""

    id: int
    token: str
    name: str
    instance_id: str
    execution: int
    op: str
    attempt: int
    max_attempts: int
    lease_ms: int
    deadline: Optional[int]
    last_failure: Optional[Dict[str, Any]]


class ActivityContext:
    """What an activity sees: its task, the details an earlier attempt left, heartbeats, and
    whether it should stop."""

    def __init__(self, task: Dict[str, Any]) -> None:
        self.info = TaskInfo(
            id=int(task["id"]),
            token=str(task["token"]),
            name=task["name"],
            instance_id=task["instance_id"],
            execution=int(task["execution"]),
            op=str(task["op"]),
            attempt=int(task["attempt"]),
            max_attempts=int(task["max_attempts"]),
            lease_ms=int(task["lease_ms"]),
            deadline=task.get("deadline"),
            last_failure=task.get("last_failure"),
        )
        self._earlier_details = task.get("heartbeat_details")
        self._details: Any = None
        self._has_details = False
        self._cancelled = False

    @property
    def attempt(self) -> int:
        """Which attempt this is (1 for the first)."""
        return self.info.attempt

    @property
    def heartbeat_details(self) -> Any:
        """The details of the latest heartbeat of an earlier attempt (None if none), to
        resume from."""
        return self._earlier_details

    @property
    def cancelled(self) -> bool:
        """Whether the activity should stop: its instance finished or was cancelled, its
        attempt timed out, or its lease was lost. An async activity is also cancelled."""
        return self._cancelled

    def heartbeat(self, details: Any = None) -> None:
        """Records progress (any JSON value); the worker sends the latest with its next
        heartbeat, and the next attempt reads it as `heartbeat_details`. Cheap: it returns at
        once. The worker heartbeats on its own too, so calling this is only needed for
        details."""
        self._details = details
        self._has_details = True


class Worker:
    """Claims tasks of its activities on `queue` from the server at `url` and runs them, at
    most `concurrency` at once. Sync activities run in threads of their own."""

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        queue: str = "default",
        *,
        concurrency: int = 10,
        lease_ms: int = 30_000,
        wait_ms: int = 5_000,
        shutdown_grace: float = 10.0,
        name: Optional[str] = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.queue = queue
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.wait_ms = wait_ms
        self.shutdown_grace = shutdown_grace
        self.name = name or f"python-{socket.gethostname()}-{os.getpid()}"
        self._http = Http(url, token)
        self._activities: Dict[str, ActivityFn] = {}
        self._stop: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._handing_back = False
        self._contexts: Set[ActivityContext] = set()

    def activity(self, name: str) -> Callable[[F], F]:
        """Registers the decorated function (async or sync, taking the context and the input)
        as the activity `name`."""

        def register(fn: F) -> F:
            self._activities[name] = fn
            return fn

        return register

    def stop(self) -> None:
        """Asks the worker to stop: it claims nothing more, lets running activities finish
        for `shutdown_grace` seconds, then hands the rest back. Safe from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def run_until_signal(self) -> None:
        """Runs until SIGTERM or SIGINT, then stops gracefully."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            await self.run()

        asyncio.run(main())

    async def run(self) -> None:
        """Runs until `stop()`."""
        if not self._activities:
            raise ValueError("register at least one activity with @worker.activity(name)")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        running: Set[asyncio.Task[None]] = set()
        slot_freed = asyncio.Event()
        stopping = asyncio.ensure_future(self._stop.wait())
        backoff = 0.1
        try:
            while not self._stop.is_set():
                if len(running) >= self.concurrency:
                    slot_freed.clear()
                    await asyncio.wait(
                        {asyncio.ensure_future(slot_freed.wait()), stopping},
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    continue
                claim = asyncio.ensure_future(self._claim(self.concurrency - len(running)))
                await asyncio.wait({claim, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not claim.done():
                    # Stopping while the claim waits (at most `wait_ms`): what it brings is
                    # handed back. Leaving without its answer would leave those tasks leased
                    # to nobody until their lease ran out.
                    try:
                        for task in await claim:
                            await self._report(task, "release", {})
                    except (DuraflowError, OSError):
                        pass
                    break
                try:
                    tasks = claim.result()
                    backoff = 0.1
                except DuraflowError as e:
                    if e.status in (400, 401, 404, 413, 415):
                        raise
                    tasks = []
                    await self._pause(backoff, e)
                    backoff = min(backoff * 2, 5.0)
                except OSError as e:
                    tasks = []
                    await self._pause(backoff, e)
                    backoff = min(backoff * 2, 5.0)
                for task in tasks:
                    t = asyncio.ensure_future(self._run_task(task))
                    running.add(t)

                    def done(t: "asyncio.Task[None]") -> None:
                        running.discard(t)
                        slot_freed.set()

                    t.add_done_callback(done)
        finally:
            stopping.cancel()
            if running:
                _, pending = await asyncio.wait(set(running), timeout=self.shutdown_grace)
                if pending:
                    self._handing_back = True
                    for ctx in list(self._contexts):
                        ctx._cancelled = True
                    for t in pending:
                        t.cancel()
                    await asyncio.wait(pending)

    async def _pause(self, seconds: float, error: Exception) -> None:
        log.warning("claiming failed (%s); retrying in %.1fs", error, seconds)
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _claim(self, room: int) -> Any:
        body = {
            "worker": self.name,
            "activities": sorted(self._activities),
            "max": min(room, 100),
            "wait_ms": self.wait_ms,
            "lease_ms": self.lease_ms,
        }
        path = f"/v1/workers/{quote(self.queue, safe='')}/claim"
        timeout = self.wait_ms / 1000 + 30
        answer = await self._call("POST", path, body, timeout)
        return answer["tasks"]

    async def _run_task(self, task: Dict[str, Any]) -> None:
        ctx = ActivityContext(task)
        fn = self._activities.get(task["name"])
        if fn is None:
            await self._report(
                task,
                "fail",
                {"message": f"no activity {task['name']!r} in this worker", "type": "UnknownActivity"},
            )
            return
        if inspect.iscoroutinefunction(fn):
            work: "asyncio.Future[Any]" = asyncio.ensure_future(fn(ctx, task["input"]))
        else:
            work = self._in_thread(fn, ctx, task["input"])
        beats = asyncio.ensure_future(self._heartbeats(ctx, task, work))
        self._contexts.add(ctx)
        try:
            output = await work
        except asyncio.CancelledError:
            if self._handing_back:
                await self._flush(ctx)
                await self._report(task, "release", {})
            # Otherwise the server said to stop: nothing is reported.
            return
        except ActivityError as e:
            body: Dict[str, Any] = {"message": e.message, "retryable": e.retryable}
            if e.type:
                body["type"] = e.type
            if e.retry_after is not None:
                body["retry_after_ms"] = int(e.retry_after * 1000)
            await self._flush(ctx)
            await self._report(task, "fail", body)
            return
        except Exception as e:  # noqa: BLE001 - any error of the activity fails the attempt
            body = {"message": str(e) or repr(e), "type": type(e).__name__, "retryable": True}
            await self._flush(ctx)
            await self._report(task, "fail", body)
            return
        finally:
            beats.cancel()
            self._contexts.discard(ctx)
        if not ctx.cancelled:
            await self._report(task, "complete", {"output": output})

    async def _flush(self, ctx: ActivityContext) -> None:
        """Sends the latest details before the attempt gives its task back, so that the next
        attempt sees them."""
        if ctx._has_details:
            body = {"token": ctx.info.token, "details": ctx._details}
            try:
                await self._call("POST", f"/v1/tasks/{ctx.info.id}/heartbeat", body)
            except (DuraflowError, OSError) as e:
                log.debug("task %s: the last heartbeat failed: %s", ctx.info.id, e)

    async def _call(self, method: str, path: str, body: Any, timeout: float = 30.0) -> Any:
        """A request in a daemon thread, so that a long poll never holds up the exit."""
        return await self._in_thread(self._http.request, method, path, body, timeout)

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """Runs `fn(*args)` in a daemon thread of its own: a sync activity that is handed back
        at shutdown and does not return must not keep the process alive."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Any]" = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def send() -> None:
            try:
                value = fn(*args)
                loop.call_soon_threadsafe(settle, True, value)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                try:
                    loop.call_soon_threadsafe(settle, False, e)
                except RuntimeError:
                    pass  # the loop has closed

        threading.Thread(target=send, daemon=True, name="duraflow").start()
        return future

    async def _heartbeats(
        self, ctx: ActivityContext, task: Dict[str, Any], work: "asyncio.Future[Any]"
    ) -> None:
        interval = max(ctx.info.lease_ms / 3000, 0.05)
        path = f"/v1/tasks/{ctx.info.id}/heartbeat"
        while True:
            await asyncio.sleep(interval)
            body: Dict[str, Any] = {"token": ctx.info.token, "lease_ms": ctx.info.lease_ms}
            if ctx._has_details:
                body["details"] = ctx._details
            try:
                answer = await self._call("POST", path, body)
                stop = bool(answer.get("cancelled"))
            except DuraflowError as e:
                stop = e.status in (404, 409)
            except OSError:
                stop = False
            if stop:
                ctx._cancelled = True
                work.cancel()
                return

    async def _report(self, task: Dict[str, Any], verb: str, body: Dict[str, Any]) -> None:
        """Sends a report, retrying on connection errors and 503 while the lease may last."""
        body = dict(body, token=str(task["token"]))
        path = f"/v1/tasks/{task['id']}/{verb}"
        delay = 0.05
        deadline = asyncio.get_running_loop().time() + int(task["lease_ms"]) / 1000
        while True:
            try:
                await self._call("POST", path, body)
                return
            except DuraflowError as e:
                if e.status != 503:
                    log.warning("task %s: %s refused: %s", task["id"], verb, e)
                    return
                error: Exception = e
            except OSError as e:
                error = e
            if asyncio.get_running_loop().time() + delay > deadline:
                log.warning("task %s: giving up on %s: %s", task["id"], verb, error)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


__all__ = ["ActivityContext", "ActivityError", "TaskInfo", "Worker"]
