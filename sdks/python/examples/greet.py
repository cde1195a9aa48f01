"""Serves the activity `greet` of the `polyglot` example's `pipeline` workflow, on queue
`python`.

    DURAFLOW_URL=http://127.0.0.1:8080 DURAFLOW_TOKEN=secret python examples/greet.py
"""

import os

from duraflow import ActivityContext, Worker

worker = Worker(os.environ.get("DURAFLOW_URL", "http://127.0.0.1:8080"), os.environ.get("DURAFLOW_TOKEN"), queue="python")


@worker.activity("greet")
async def greet(ctx: ActivityContext, name: str) -> str:
    return f"Hello, {name}, from Python"


if __name__ == "__main__":
    worker.run_until_signal()
