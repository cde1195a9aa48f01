"""duraflow for Python: workers that run activities of duraflow workflows, and a client,
both talking to `duraflow serve` over HTTP/JSON."""

from ._http import DuraflowError
from .client import Client, WorkflowFailed
from .worker import ActivityContext, ActivityError, TaskInfo, Worker

__all__ = [
    "ActivityContext",
    "ActivityError",
    "Client",
    "DuraflowError",
    "TaskInfo",
    "Worker",
    "WorkflowFailed",
]
