"""The client: start workflows, raise events, read status, wait for results, and resolve
callbacks, through `duraflow serve`."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional
from urllib.parse import quote

from ._http import DuraflowError, Http

FINISHED = ("completed", "failed", "cancelled", "terminated")

# The longest the server is asked to hold one request of `Client.wait`, in milliseconds (it
# allows up to 60000).
LONG_POLL_MS = 25_000


class WorkflowFailed(Exception):
    """The instance did not complete: its status and failure (if any)."""

    def __init__(self, instance_id: str, status: str, failure: Optional[Dict[str, Any]]) -> None:
        message = (failure or {}).get("message", "")
        super().__init__(f"instance {instance_id} {status}: {message}")
        self.instance_id = instance_id
        self.status = status
        self.failure = failure


class Client:
    """A client of `duraflow serve` at `url` (such as `http://127.0.0.1:8080`)."""

    def __init__(self, url: str, token: Optional[str] = None) -> None:
        self._http = Http(url, token)

    def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        id: Optional[str] = None,
        queue: Optional[str] = None,
    ) -> str:
        """Starts `workflow` with `input`; its instance id. An existing id returns that
        instance."""
        body: Dict[str, Any] = {"workflow": workflow, "input": input}
        if id is not None:
            body["id"] = id
        if queue is not None:
            body["queue"] = queue
        return str(self._http.request("POST", "/v1/instances", body)["id"])

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Raises the event `name` with `data` on an instance."""
        path = f"/v1/instances/{quote(instance_id, safe='')}/events/{quote(name, safe='')}"
        self._http.request("POST", path, data)

    def status(self, instance_id: str) -> Dict[str, Any]:
        """The instance: `status`, `output` or `failure`, and more (see `/openapi.json`)."""
        info: Dict[str, Any] = self._http.request(
            "GET", f"/v1/instances/{quote(instance_id, safe='')}"
        )
        return info

    def wait(self, instance_id: str, timeout: float = 60.0, poll: float = 0.05) -> Any:
        """Waits for the instance to finish; its output, or `WorkflowFailed`. `TimeoutError`
        after `timeout` seconds.

        The server holds each request until the instance finishes, for up to
        `LONG_POLL_MS` (`GET /v1/instances/{id}?wait_ms=...`), so the answer comes as soon
        as it has finished. `poll` is no longer used (this method polled every `poll`
        seconds before); it is kept so that calls that pass it still work."""
        del poll
        deadline = time.monotonic() + timeout
        path = f"/v1/instances/{quote(instance_id, safe='')}"
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            wait_ms = min(LONG_POLL_MS, int(remaining * 1000))
            info = self._http.request(
                "GET", f"{path}?wait_ms={wait_ms}", timeout=wait_ms / 1000 + 30.0
            )
            if info["status"] in FINISHED:
                if info["status"] == "completed":
                    return info.get("output")
                raise WorkflowFailed(instance_id, info["status"], info.get("failure"))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"instance {instance_id} did not finish within {timeout}s")

    def complete_callback(self, token: str, value: Any = None) -> None:
        """Completes the callback with `token`: the waiting workflow receives `value`."""
        self._http.request(
            "POST", f"/v1/callbacks/{quote(token, safe='')}/complete", {"value": value}
        )

    def fail_callback(self, token: str, type: str, message: str) -> None:
        """Fails the callback with `token` with an error type and message."""
        self._http.request(
            "POST",
            f"/v1/callbacks/{quote(token, safe='')}/fail",
            {"type": type, "message": message},
        )


__all__ = ["Client", "DuraflowError", "WorkflowFailed"]
